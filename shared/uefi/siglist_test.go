package uefi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestGUID(t *testing.T) {
	g, err := ParseGUID("8BE4DF61-93CA-11D2-AA0D-00E098032B8C")
	if err != nil {
		t.Fatal(err)
	}
	// EFI byte order: the first three fields little-endian.
	want := []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	if !bytes.Equal(g[:], want) || g != GlobalVariableGUID {
		t.Errorf("bytes %x, want %x", g[:], want)
	}
	if g.String() != "8be4df61-93ca-11d2-aa0d-00e098032b8c" {
		t.Errorf("String() = %s", g)
	}
	for _, bad := range []string{"", "8be4df61-93ca-11d2-aa0d-00e098032b8", "8be4df6193ca-11d2-aa0d-00e098032b8c0",
		"8be4df61-93ca-11d2-aa0d-00e098032bxx", "8be4df61+93ca-11d2-aa0d-00e098032b8c"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) accepted", bad)
		}
	}
}

func TestSignatureListsSnakeoil(t *testing.T) {
	s := snakeoilStore(t)
	cert := mustCert(t, snakeoilCert)
	for _, n := range []string{VarPK, VarKEK, VarDB} {
		g := GlobalVariableGUID
		if n == VarDB {
			g = ImageSecurityDatabaseGUID
		}
		v, _ := s.Get(n, g)
		ls, err := ParseSignatureLists(v.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 1 || ls[0].Type != CertX509GUID || len(ls[0].Entries) != 1 || !bytes.Equal(ls[0].Entries[0].Data, cert.Raw) {
			t.Errorf("%s: %d lists, want one X.509 list holding the snakeoil certificate", n, len(ls))
		}
		if !bytes.Equal(EncodeSignatureLists(ls), v.Data) {
			t.Errorf("%s: encode(parse) changed the bytes", n)
		}
	}
}

func TestEncodeSignatureListsGroupsBySize(t *testing.T) {
	a, b, c := SignatureData{Data: []byte("aa")}, SignatureData{Data: []byte("bb")}, SignatureData{Data: []byte("ccc")}
	enc := EncodeSignatureLists([]SignatureList{{Type: CertX509GUID, Entries: []SignatureData{a, b, c}}, {Type: CertSHA256GUID}})
	ls, err := ParseSignatureLists(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || len(ls[0].Entries) != 2 || len(ls[1].Entries) != 1 || string(ls[1].Entries[0].Data) != "ccc" {
		t.Errorf("parsed %+v, want [aa bb] and [ccc]", ls)
	}
}

func TestParseSignatureListsRefusesHostile(t *testing.T) {
	good := EncodeSignatureLists([]SignatureList{{Type: CertSHA256GUID, Entries: []SignatureData{{Data: make([]byte, 32)}, {Data: make([]byte, 32)}}}})
	le := binary.LittleEndian
	tests := map[string]func([]byte) []byte{
		"short header":       func(b []byte) []byte { return b[:20] },
		"list past end":      func(b []byte) []byte { le.PutUint32(b[16:], 1<<20); return b },
		"list below header":  func(b []byte) []byte { le.PutUint32(b[16:], 10); return b },
		"signature header":   func(b []byte) []byte { le.PutUint32(b[20:], 4); return b },
		"signature size 0":   func(b []byte) []byte { le.PutUint32(b[24:], 0); return b },
		"not a multiple":     func(b []byte) []byte { le.PutUint32(b[24:], 47); return b },
		"trailing bytes":     func(b []byte) []byte { return append(b, 1, 2, 3) },
		"size wraps to zero": func(b []byte) []byte { le.PutUint32(b[24:], 0xffffffff); return b },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSignatureLists(mutate(bytes.Clone(good))); !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParseSignatureLists(f *testing.F) {
	f.Add(EncodeSignatureLists([]SignatureList{{Type: CertX509GUID, Entries: []SignatureData{{Data: []byte("cert")}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := ParseSignatureLists(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := ParseSignatureLists(EncodeSignatureLists(ls))
		if err != nil {
			t.Fatalf("re-encoded lists do not parse: %v", err)
		}
		var n, m int
		for _, l := range ls {
			n += len(l.Entries)
		}
		for _, l := range again {
			m += len(l.Entries)
		}
		if n != m {
			t.Fatalf("%d entries became %d", n, m)
		}
	})
}

func TestPredictRefusesNonUKI(t *testing.T) {
	off, err := ParseVarStore(testStore())
	if err != nil {
		t.Fatal(err)
	}
	for name, pe := range map[string][]byte{
		"no .linux": testPE([][]byte{[]byte("code")}, nil),
		"not a PE":  []byte("hello"),
	} {
		if _, err := PredictOS(pe, off); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
	}
}
