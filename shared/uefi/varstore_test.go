package uefi

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// snakeoilOwner is the signature owner of the snakeoil store's KEK, db and
// dbx entries: the module GUID of OVMF's EnrollDefaultKeys application.
var snakeoilOwner = mustGUID("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")

func TestVarStoreRoundTrip(t *testing.T) {
	need(t, snakeoilVars, blankVars)
	for _, path := range []string{snakeoilVars, blankVars} {
		t.Run(path, func(t *testing.T) {
			raw := mustRead(t, path)
			s, err := ParseVarStore(raw)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, v := range s.Variables() {
				if k := v.GUID.String() + v.Name; seen[k] {
					t.Errorf("%s %v is live twice: a deleted copy was kept", v.Name, v.GUID)
				} else {
					seen[k] = true
				}
			}
			got, err := s.Bytes()
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("unedited round trip: equal %v, error %v", bytes.Equal(got, raw), err)
			}
			// A rewrite (every live variable re-set) keeps the variables
			// and the size; for the blank store it is byte-identical.
			for _, v := range s.Variables() {
				if err := s.Set(v); err != nil {
					t.Fatal(err)
				}
			}
			s.dirty = true
			rewritten, err := s.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if len(rewritten) != len(raw) {
				t.Fatalf("rewritten size %d, want %d", len(rewritten), len(raw))
			}
			again, err := ParseVarStore(rewritten)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(again.vars, s.vars, recordEqual) {
				t.Error("rewritten store parses to other variables")
			}
			if path == blankVars && !bytes.Equal(rewritten, raw) {
				t.Error("rewriting the blank store changed its bytes")
			}
		})
	}
}

func recordEqual(a, b record) bool {
	return a.Name == b.Name && a.GUID == b.GUID && a.Attributes == b.Attributes && bytes.Equal(a.Data, b.Data) &&
		a.monotonic == b.monotonic && a.timestamp == b.timestamp && a.pubKeyIndex == b.pubKeyIndex
}

// TestEnrollSecureBootMatchesSnakeoil enrolls Debian's snakeoil
// certificate into the blank store and compares the Secure Boot variables
// with the ones OVMF's EnrollDefaultKeys wrote into the snakeoil store.
func TestEnrollSecureBootMatchesSnakeoil(t *testing.T) {
	need(t, snakeoilVars, blankVars, snakeoilCert)
	want, err := ParseVarStore(mustRead(t, snakeoilVars))
	if err != nil {
		t.Fatal(err)
	}
	blank, err := ParseVarStore(mustRead(t, blankVars))
	if err != nil {
		t.Fatal(err)
	}
	if blank.SecureBootEnabled() || !want.SecureBootEnabled() {
		t.Fatalf("SecureBootEnabled: blank %v, snakeoil %v", blank.SecureBootEnabled(), want.SecureBootEnabled())
	}
	cert := []*x509.Certificate{mustCert(t, snakeoilCert)}
	if err := EnrollSecureBoot(blank, snakeoilOwner, cert, cert, cert); err != nil {
		t.Fatal(err)
	}
	out, err := blank.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseVarStore(out)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		g    GUID
	}{
		{VarPK, GlobalVariableGUID}, {VarKEK, GlobalVariableGUID},
		{VarDB, ImageSecurityDatabaseGUID}, {VarDBX, ImageSecurityDatabaseGUID},
		{VarSecureBootEnable, SecureBootEnableDisableGUID},
	}
	for _, c := range checks {
		g, gok := got.Get(c.name, c.g)
		w, wok := want.Get(c.name, c.g)
		if !gok || !wok || g.Attributes != w.Attributes || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: enrolled (%v, attr %#x, %d bytes), snakeoil (%v, attr %#x, %d bytes)",
				c.name, gok, g.Attributes, len(g.Data), wok, w.Attributes, len(w.Data))
		}
	}
	if !got.SecureBootEnabled() {
		t.Error("enrolled store does not enable Secure Boot")
	}
	if len(got.Variables()) != len(checks) {
		t.Errorf("enrolled store has %d variables, want %d", len(got.Variables()), len(checks))
	}
}

func TestSecureBootEnabled(t *testing.T) {
	need(t, snakeoilVars)
	tests := map[string]struct {
		edit func(*VarStore) error
		want bool
	}{
		"snakeoil":     {func(*VarStore) error { return nil }, true},
		"switched off": {func(s *VarStore) error { return s.SetSecureBootEnable(false) }, false},
		"switched on":  {func(s *VarStore) error { return s.SetSecureBootEnable(true) }, true},
		"no SecureBootEnable: OVMF creates it as 1": {func(s *VarStore) error {
			s.Delete(VarSecureBootEnable, SecureBootEnableDisableGUID)
			return nil
		}, true},
		"SecureBootEnable 2 is not SECURE_BOOT_ENABLE": {func(s *VarStore) error {
			return s.Set(Variable{Name: VarSecureBootEnable, GUID: SecureBootEnableDisableGUID, Attributes: 3, Data: []byte{2}})
		}, false},
		"no PK: setup mode": {func(s *VarStore) error {
			s.Delete(VarPK, GlobalVariableGUID)
			return nil
		}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := ParseVarStore(mustRead(t, snakeoilVars))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.edit(s); err != nil {
				t.Fatal(err)
			}
			b, err := s.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			s2, err := ParseVarStore(b)
			if err != nil {
				t.Fatal(err)
			}
			if s.SecureBootEnabled() != tc.want || s2.SecureBootEnabled() != tc.want {
				t.Errorf("SecureBootEnabled %v (after write %v), want %v", s.SecureBootEnabled(), s2.SecureBootEnabled(), tc.want)
			}
		})
	}
}

func TestVarStoreFull(t *testing.T) {
	need(t, blankVars)
	s, err := ParseVarStore(mustRead(t, blankVars))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(Variable{Name: "big", GUID: GlobalVariableGUID, Attributes: 7, Data: make([]byte, s.storeEnd)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bytes(); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("error %v, want ErrStoreFull", err)
	}
	if !s.Delete("big", GlobalVariableGUID) || s.Delete("big", GlobalVariableGUID) {
		t.Fatal("Delete did not report presence")
	}
	if _, err := s.Bytes(); err != nil {
		t.Fatalf("after deleting the big variable: %v", err)
	}
}

// testStore is a small valid store image: a firmware volume header, the
// authenticated store header, one variable.
func testStore() []byte {
	const size = 4096
	b := bytes.Repeat([]byte{0xff}, size)
	le := binary.LittleEndian
	copy(b[:16], make([]byte, 16))
	copy(b[0x10:], systemNVDataFVGUID[:])
	le.PutUint64(b[0x20:], size)
	copy(b[0x28:], "_FVH")
	le.PutUint32(b[0x2c:], 0x0004feff)
	le.PutUint16(b[0x30:], 0x48)
	le.PutUint16(b[0x32:], 0)
	copy(b[0x34:], []byte{0, 0, 0, 2})
	le.PutUint32(b[0x38:], size/512)
	le.PutUint32(b[0x3c:], 512)
	copy(b[0x40:], make([]byte, 8))
	var sum uint16
	for i := 0; i < 0x48; i += 2 {
		sum += le.Uint16(b[i:])
	}
	le.PutUint16(b[0x32:], -sum)
	st := b[0x48:]
	copy(st, authenticatedVariableGUID[:])
	le.PutUint32(st[16:], size-0x48-512)
	st[20], st[21] = storeFormatted, storeHealthy
	copy(st[22:28], make([]byte, 6))
	s := &VarStore{raw: b, storeStart: 0x48 + storeHeaderSize, storeEnd: size - 512, dirty: true}
	s.vars = []record{{Variable: Variable{Name: "Test", GUID: GlobalVariableGUID, Attributes: 7, Data: []byte("x")}}}
	out, err := s.Bytes()
	if err != nil {
		panic(err)
	}
	return out
}

func TestParseVarStoreRefusesHostile(t *testing.T) {
	good := testStore()
	if s, err := ParseVarStore(good); err != nil || len(s.Variables()) != 1 {
		t.Fatalf("the test store does not parse: %v", err)
	}
	le := binary.LittleEndian
	first := 0x48 + storeHeaderSize
	tests := map[string]func([]byte) []byte{
		"empty":               func([]byte) []byte { return nil },
		"truncated":           func(b []byte) []byte { return b[:60] },
		"no _FVH":             func(b []byte) []byte { b[0x28] = 'X'; return b },
		"wrong file system":   func(b []byte) []byte { b[0x10] ^= 1; return b },
		"bad checksum":        func(b []byte) []byte { b[0x32] ^= 1; return b },
		"FV longer than file": func(b []byte) []byte { return b[:2048] },
		"plain variable store": func(b []byte) []byte {
			plain := mustGUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")
			copy(b[0x48:], plain[:])
			return b
		},
		"store past FV":     func(b []byte) []byte { le.PutUint32(b[0x48+16:], 1<<20); return b },
		"store not healthy": func(b []byte) []byte { b[0x48+21] = 0; return b },
		"name past end":     func(b []byte) []byte { le.PutUint32(b[first+36:], 1<<20); return b },
		"data size wraps":   func(b []byte) []byte { le.PutUint32(b[first+40:], 0xffffffff); return b },
		"name without NUL":  func(b []byte) []byte { b[first+60+8] = 'A'; return b },
		"odd name size":     func(b []byte) []byte { le.PutUint32(b[first+36:], 9); return b },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseVarStore(mutate(bytes.Clone(good))); !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParseVarStore(f *testing.F) {
	f.Add(testStore())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseVarStore(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := s.Bytes()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("unedited round trip changed the bytes (%v)", err)
		}
		s.dirty = true
		out, err = s.Bytes()
		if errors.Is(err, ErrStoreFull) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseVarStore(out)
		if err != nil {
			t.Fatalf("rewritten store does not parse: %v", err)
		}
		if !slices.EqualFunc(again.vars, s.vars, recordEqual) {
			t.Fatal("rewritten store parses to other variables")
		}
	})
}
