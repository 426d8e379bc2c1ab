package luks2

import (
	"bytes"
	"testing"
)

// TestKeyslotsAreaFiller: the unused keyslots area is random filler drawn
// from Options.Rand: not zeros, different for different randomness, and
// reproducible from the same.
func TestKeyslotsAreaFiller(t *testing.T) {
	tail := func(seed byte) []byte {
		t.Helper()
		disk := make(memDisk, defaultDataOffset)
		opts := Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("p"), KDF: PBKDF2Fast()}}, Rand: testRand(seed)}
		h, err := FormatHeader(disk, 4096, opts)
		if err != nil {
			t.Fatal(err)
		}
		h.Wipe()
		// The last 64 KiB before the data: past every keyslot's material.
		return bytes.Clone(disk[defaultDataOffset-64<<10 : defaultDataOffset])
	}
	a, again, b := tail(1), tail(1), tail(2)
	tests := map[string]struct {
		ok bool
	}{
		"not zeros":                  {ok: !bytes.Equal(a, make([]byte, len(a)))},
		"same randomness, same":      {ok: bytes.Equal(a, again)},
		"other randomness, other":    {ok: !bytes.Equal(a, b)},
		"not a repeated short block": {ok: !bytes.Equal(a[:32<<10], a[32<<10:])},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if !tt.ok {
				t.Error("filler check failed")
			}
		})
	}
}
