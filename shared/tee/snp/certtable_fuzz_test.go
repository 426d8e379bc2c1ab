package snp

import (
	"bytes"
	"os"
	"testing"
)

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
