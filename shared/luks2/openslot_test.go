package luks2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestOpenKeyslot: only the named keyslot is tried, whatever the
// priorities, and a missing keyslot is unsupported.
func TestOpenKeyslot(t *testing.T) {
	path, h := formatFile(t, 4096, Options{Keyslots: []KeyslotSpec{
		{Passphrase: []byte("disk key"), KDF: PBKDF2Fast()},
		{Passphrase: []byte("recovery"), KDF: testArgon2id()},
	}})
	rewriteMeta(t, path, func(m map[string]any) { obj(m, "keyslots", "0")["priority"] = 0 }) // "ignore"
	f := openFile(t, path)
	tests := map[string]struct {
		pass     string
		id       int
		wantErr  error
		wantSlot int
	}{
		"keyslot 0, even when ignored": {pass: "disk key", id: 0},
		"keyslot 1":                    {pass: "recovery", id: 1, wantSlot: 1},
		"keyslot 1's passphrase on 0":  {pass: "recovery", id: 0, wantErr: ErrWrongPassphrase},
		"keyslot 0's passphrase on 1":  {pass: "disk key", id: 1, wantErr: ErrWrongPassphrase},
		"no keyslot 2":                 {pass: "disk key", id: 2, wantErr: ErrUnsupported},
		"negative":                     {pass: "disk key", id: -1, wantErr: ErrUnsupported},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			key, got, err := OpenKeyslot(f, []byte(tc.pass), tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("OpenKeyslot = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if key != nil || got != nil {
					t.Error("OpenKeyslot returned a key or header with its error")
				}
				return
			}
			if !bytes.Equal(key, h.VolumeKey()) || got.Keyslot != tc.wantSlot || got.UUID != h.UUID {
				t.Errorf("OpenKeyslot = keyslot %d UUID %s, want keyslot %d UUID %s and the volume key", got.Keyslot, got.UUID, tc.wantSlot, h.UUID)
			}
		})
	}

	// A wrong passphrase for keyslot 0 never reaches keyslot 1: with limits
	// that refuse keyslot 1's argon2, Open reports keyslot 1 as unusable,
	// OpenKeyslot only the wrong passphrase.
	lim := limits{maxIterations: 1000, maxMemoryKiB: 1023, maxTime: 4, maxThreads: 1}
	rewriteMeta(t, path, func(m map[string]any) { delete(obj(m, "keyslots", "0"), "priority") })
	if _, _, err := openSlotWith(f, []byte("wrong"), 0, lim); !errors.Is(err, ErrWrongPassphrase) || strings.Contains(err.Error(), "keyslot 1") {
		t.Errorf("openSlotWith(0) = %v, want only ErrWrongPassphrase", err)
	}
	if _, _, err := openWith(f, []byte("wrong"), lim); !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "keyslot 1") {
		t.Errorf("openWith = %v, want keyslot 1 reported unusable", err)
	}
}

// TestDataSize: a fixed segment size is reported, "dynamic" is 0, and a
// size that is not a positive multiple of the sector is corrupt.
func TestDataSize(t *testing.T) {
	tests := map[string]struct {
		size    any // nil: as written ("dynamic")
		want    int64
		wantErr error
	}{
		"dynamic":          {want: 0},
		"1 MiB":            {size: "1048576", want: 1 << 20},
		"zero":             {size: "0", wantErr: ErrCorruptHeader},
		"partial sector":   {size: "1049088", wantErr: ErrCorruptHeader},
		"not a number":     {size: "lots", wantErr: ErrCorruptHeader},
		"beyond 2^62":      {size: "9223372036854771712", wantErr: ErrCorruptHeader},
		"negative decimal": {size: "-4096", wantErr: ErrCorruptHeader},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path, _ := formatFile(t, 4096, minimalOptions("p"))
			if tc.size != nil {
				rewriteMeta(t, path, func(m map[string]any) { obj(m, "segments", "0")["size"] = tc.size })
			}
			for _, open := range []func() (*Header, error){
				func() (*Header, error) { _, h, err := Open(openFile(t, path), []byte("p")); return h, err },
				func() (*Header, error) { _, h, err := OpenKeyslot(openFile(t, path), []byte("p"), 0); return h, err },
			} {
				h, err := open()
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("open = %v, want %v", err, tc.wantErr)
				}
				if err == nil && h.DataSize != tc.want {
					t.Errorf("DataSize = %d, want %d", h.DataSize, tc.want)
				}
			}
		})
	}
}
