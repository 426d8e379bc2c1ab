package snp

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

// overlappingTable is a table of MaxCertTableSize bytes whose header names
// entries, each covering all the data after the header: a parser that
// copies every entry allocates entries × data bytes (with 1,365 entries,
// 1,365 × 32 KiB ≈ 44 MB from one 64 KiB request).
func overlappingTable(entries int) []byte {
	b := make([]byte, MaxCertTableSize)
	end := (entries + 1) * abi.CertTableEntrySize
	for i := range entries {
		e := b[i*abi.CertTableEntrySize:]
		e[0] = byte(i) | 1 // a non-zero GUID
		e[1] = byte(i >> 8)
		binary.LittleEndian.PutUint32(e[abi.GUIDSize:], uint32(end))
		binary.LittleEndian.PutUint32(e[abi.GUIDSize+4:], uint32(len(b)-end))
	}
	return b
}

// TestParseCertTableRefusesOverlap: entries that cover the same bytes are
// refused before anything is copied (found by FuzzParseCertTable, which
// stalled on such an input).
func TestParseCertTableRefusesOverlap(t *testing.T) {
	for _, n := range []int{2, MaxCertTableSize / (2 * abi.CertTableEntrySize)} {
		if table, err := parseCertTable(overlappingTable(n)); err == nil {
			t.Errorf("%d overlapping entries accepted (%d entries parsed)", n, len(table.Entries))
		}
	}
	if _, err := parseCertTable(overlappingTable(1)); err != nil {
		t.Errorf("one entry: %v", err)
	}
}

// FuzzParseCertTable feeds hostile certificate tables (host-supplied, next
// to the report) to the table parser. What it accepts re-encodes to a
// table that parses to the same entries.
func FuzzParseCertTable(f *testing.F) {
	if b, err := os.ReadFile("testdata/sim-certtable.bin"); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Add(append(bytes.Repeat([]byte{1}, 16), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	f.Add(overlappingTable(MaxCertTableSize / (2 * abi.CertTableEntrySize)))
	f.Fuzz(func(t *testing.T, b []byte) {
		table, err := parseCertTable(b)
		if err != nil {
			if table != nil {
				t.Fatal("parseCertTable returned a table with an error")
			}
			return
		}
		again, err := parseCertTable(table.Marshal())
		if err != nil {
			t.Fatalf("re-encoded table refused: %v", err)
		}
		if len(again.Entries) != len(table.Entries) {
			t.Fatalf("re-encoded table has %d entries, want %d", len(again.Entries), len(table.Entries))
		}
		for i, e := range table.Entries {
			if again.Entries[i].GUID != e.GUID || !bytes.Equal(again.Entries[i].RawCert, e.RawCert) {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
		for _, e := range table.Entries {
			if len(e.RawCert) > len(b) {
				t.Fatalf("entry of %d bytes from a %d byte table", len(e.RawCert), len(b))
			}
		}
	})
}
