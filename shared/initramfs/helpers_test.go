package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strconv"
	"testing"
)

// testEntry is one entry read back by readNewc.
type testEntry struct {
	Header
	Data []byte
}

// readNewc parses a newc stream strictly (test helper: checks the padding
// and the trailer that Writer must produce).
func readNewc(t *testing.T, b []byte) []testEntry {
	t.Helper()
	var out []testEntry
	off := 0
	align := func() {
		for off%4 != 0 {
			if off >= len(b) || b[off] != 0 {
				t.Fatalf("bad padding at offset %d", off)
			}
			off++
		}
	}
	for {
		if len(b)-off < headerLen || string(b[off:off+6]) != newcMagic {
			t.Fatalf("no newc header at offset %d", off)
		}
		var f [13]uint64
		for i := range f {
			s := string(b[off+6+8*i : off+14+8*i])
			v, err := strconv.ParseUint(s, 16, 32)
			if err != nil {
				t.Fatalf("field %d at offset %d: %v", i, off, err)
			}
			f[i] = v
		}
		off += headerLen
		nameSize := int(f[11])
		if nameSize < 1 || off+nameSize > len(b) || b[off+nameSize-1] != 0 {
			t.Fatalf("bad name at offset %d", off)
		}
		name := string(b[off : off+nameSize-1])
		off += nameSize
		align()
		size := int(f[6])
		if off+size > len(b) {
			t.Fatalf("entry %s: data past end", name)
		}
		e := testEntry{Header: Header{
			Name: name, Ino: uint32(f[0]), Mode: uint32(f[1]), UID: uint32(f[2]), GID: uint32(f[3]),
			Nlink: uint32(f[4]), Mtime: int64(f[5]), Size: int64(size), DevMajor: uint32(f[7]),
			DevMinor: uint32(f[8]), RdevMajor: uint32(f[9]), RdevMinor: uint32(f[10]),
		}, Data: b[off : off+size]}
		off += size
		align()
		if name == trailerName {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

// gunzip decompresses b.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// byName indexes entries by name.
func byName(es []testEntry) map[string]testEntry {
	m := make(map[string]testEntry, len(es))
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

func (e testEntry) String() string { return fmt.Sprintf("%s %o %d", e.Name, e.Mode, e.Size) }
