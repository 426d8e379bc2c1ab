package luks2

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// BenchmarkEncryptImageMemory is BenchmarkEncryptImage writing to a file
// in /dev/shm (tmpfs), where the final fsync costs nothing: the throughput
// of EncryptImage's own work (random keyslot area, header, data on all
// cores), without the disk's.
func BenchmarkEncryptImageMemory(b *testing.B) {
	out, err := os.CreateTemp("/dev/shm", "confidant-luks2-bench-")
	if err != nil {
		b.Skipf("no tmpfs at /dev/shm: %v", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	in := pattern(64 << 20)
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
