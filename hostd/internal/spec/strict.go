package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode"
)

// checkFileKind stats a spec path: hostd reads the kernel, initrd,
// firmware and manifest as regular files, and hands the OS disk to QEMU as
// a regular file or a block device. A device such as /dev/zero, a
// directory or a FIFO (whose open would wait for a writer) is refused.
func checkFileKind(field, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	m := fi.Mode()
	switch {
	case m.IsRegular():
		return nil
	case field != "image.os_disk":
		return fmt.Errorf("%q is not a regular file (%s)", path, m.Type())
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return nil
	default:
		return fmt.Errorf("%q is not a regular file or block device (%s)", path, m.Type())
	}
}

// checkDuplicateKeys refuses a JSON document in which an object repeats a
// key, also in another case (encoding/json matches field names without
// regard to case and keeps the last value, where another reader may keep
// the first). b was decoded already, so it is valid JSON of bounded depth.
func checkDuplicateKeys(b []byte) error {
	return checkKeys(json.NewDecoder(bytes.NewReader(b)))
}

func checkKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		if d == '{' {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := tok.(string)
			folded := strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, k)
			if seen[folded] {
				return fmt.Errorf("duplicate key %q", k)
			}
			seen[folded] = true
		}
		if err := checkKeys(dec); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}
