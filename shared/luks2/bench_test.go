package luks2

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkXTSRaw measures the data cipher alone: aes-xts-plain64 with a
// 512-bit key over 1 MiB of 4096-byte sectors, in place, on one core.
func BenchmarkXTSRaw(b *testing.B) {
	dc, err := NewDataCipher(bytes.Repeat([]byte{1}, 64), 4096)
	if err != nil {
		b.Fatal(err)
	}
	buf := pattern(encryptChunk)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		if err := dc.EncryptSectors(buf, buf, int64(i%64)*encryptChunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncryptImage measures EncryptImage end to end on a 64 MiB image
// held in memory, written to a file: header (16 MiB random keyslots area,
// pbkdf2 keyslot) plus data on all cores, plus the final fsync.
func BenchmarkEncryptImage(b *testing.B) {
	in := pattern(64 << 20)
	path := filepath.Join(b.TempDir(), "out.img")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	opts := Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}}}
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		h, err := EncryptImage(context.Background(), bytes.NewReader(in), int64(len(in)), out, opts, nil)
		if err != nil {
			b.Fatal(err)
		}
		h.Wipe()
	}
}

// BenchmarkOpenPBKDF2Fast measures unlocking the released-key keyslot: what
// the agent pays per disk besides dm-crypt.
func BenchmarkOpenPBKDF2Fast(b *testing.B) {
	opts := minimalOptions("p")
	disk := make(memDisk, opts.DataOffset+4096)
	if _, err := FormatHeader(disk, 4096, opts); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		key, _, err := Open(disk, []byte("p"))
		if err != nil {
			b.Fatal(err)
		}
		clear(key)
	}
}
