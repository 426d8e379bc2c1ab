package seal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	s, err := LoadOrCreate(filepath.Join(t.TempDir(), "kek"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(make([]byte, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := s.Seal([]byte("secret"), []byte("kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s.Open(blob, []byte("kid-1")); err != nil || string(pt) != "secret" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	flipped := append([]byte(nil), blob...)
	flipped[len(flipped)-1] ^= 1
	tests := map[string]struct {
		s    *Sealer
		blob []byte
		aad  string
	}{
		"wrong aad":     {s: s, blob: blob, aad: "kid-2"},
		"wrong kek":     {s: other, blob: blob, aad: "kid-1"},
		"flipped bit":   {s: s, blob: flipped, aad: "kid-1"},
		"truncated":     {s: s, blob: blob[:10], aad: "kid-1"},
		"empty":         {s: s, blob: nil, aad: "kid-1"},
		"wrong version": {s: s, blob: append([]byte{9}, blob[1:]...), aad: "kid-1"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := tt.s.Open(tt.blob, []byte(tt.aad)); !errors.Is(err, ErrOpen) {
				t.Fatalf("got %v, want ErrOpen", err)
			}
		})
	}
}

func TestLoadOrCreateKeepsKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "kek")
	a, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) {
		t.Fatal("KEK changed on reload")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK mode %v, want 0600", fi.Mode().Perm())
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("short KEK accepted")
	}
}
