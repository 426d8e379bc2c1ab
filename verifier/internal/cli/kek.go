package cli

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// kekEnv names the environment variable that can hold the KEK (64 hex
// digits or base64 of 32 bytes), for secret stores that hand secrets to
// processes that way. Kept for them, with a warning: the process's initial
// environment stays readable in /proc/PID/environ whatever os.Unsetenv
// does. --kek-file and --kek-fd leave no such copy.
const kekEnv = "CONFIDANT_VERIFIER_KEK"

// maxKEKInput bounds what --kek-fd reads.
const maxKEKInput = 4096

// kekFDFlag adds --kek-fd to fs.
func kekFDFlag(fs *pflag.FlagSet) *int {
	return fs.Int("kek-fd", -1, "read the key-encryption key from this open file descriptor to its end, then close it "+
		"(32 raw bytes, 64 hex digits or base64; for example --kek-fd 3 3<FILE, or a pipe); replaces --kek-file")
}

// loadKEK returns the KEK given by --kek-fd or by the environment, or nil
// when neither is (the KEK file is used). kekFileSet reports that
// --kek-file was given too. No error or log line holds the KEK.
func loadKEK(fd int, kekFileSet bool, log *slog.Logger) ([]byte, error) {
	env, inEnv := os.LookupEnv(kekEnv)
	if inEnv {
		// Children spawned from here on do not inherit it.
		os.Unsetenv(kekEnv)
	}
	given := 0
	for _, b := range []bool{fd >= 0, inEnv, kekFileSet} {
		if b {
			given++
		}
	}
	if given > 1 {
		return nil, fmt.Errorf("give the KEK one way: --kek-file, --kek-fd or %s", kekEnv)
	}
	switch {
	case fd >= 0:
		kek, err := readKEKFD(fd)
		if err != nil {
			return nil, err
		}
		log.Info("read the KEK from a file descriptor; --kek-file is not used", "fd", fd)
		return kek, nil
	case inEnv:
		kek, err := parseKEK(env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kekEnv, err)
		}
		log.Warn(fmt.Sprintf("%s is visible in /proc/%d/environ for the life of the process; use --kek-file or --kek-fd",
			kekEnv, os.Getpid()), "env", kekEnv)
		return kek, nil
	}
	return nil, nil
}

// readKEKFD reads the KEK from file descriptor fd and closes it.
func readKEKFD(fd int) ([]byte, error) {
	if fd == 1 || fd == 2 {
		return nil, fmt.Errorf("--kek-fd %d: that is stdout or stderr", fd)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("kek-fd-%d", fd))
	if f == nil {
		return nil, fmt.Errorf("--kek-fd %d: not a valid file descriptor", fd)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKEKInput+1))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("--kek-fd %d: reading: %w", fd, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("--kek-fd %d: closing: %w", fd, err)
	}
	if len(b) > maxKEKInput {
		return nil, fmt.Errorf("--kek-fd %d: more than %d bytes", fd, maxKEKInput)
	}
	if len(b) == 32 {
		return append([]byte(nil), b...), nil
	}
	kek, err := parseKEK(string(b))
	if err != nil {
		return nil, fmt.Errorf("--kek-fd %d: read %d bytes: %w", fd, len(b), err)
	}
	return kek, nil
}

// parseKEK decodes a KEK written as 64 hex digits or base64 (any of the
// four alphabets and paddings), surrounding space ignored. Its error does
// not quote the input.
func parseKEK(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if b, err := hex.DecodeString(v); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("want 32 bytes as 64 hex digits or base64")
}
