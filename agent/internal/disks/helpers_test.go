package disks

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

const (
	// imageSize is a disk image: room for a 16 MiB header area (the OS
	// disk's) and 16 MiB of data, sparse.
	imageSize = 32 << 20
	osUUID    = "3f1c2b4a-5d6e-4f70-8192-a3b4c5d6e7f8"
)

// releasedKey is a released disk key for the tests.
var releasedKey = bytes.Repeat([]byte{0x42}, 32)

// image makes a sparse file of size bytes.
func image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// formatLUKS2 writes a LUKS2 header to path with a keyslot for each
// passphrase, the first in keyslot 0, data at 16 MiB.
func formatLUKS2(t *testing.T, path, uuid string, passphrases ...[]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var slots []luks2.KeyslotSpec
	for _, p := range passphrases {
		slots = append(slots, luks2.KeyslotSpec{Passphrase: p, KDF: luks2.PBKDF2Fast()})
	}
	hdr, err := luks2.FormatHeader(f, st.Size()-16<<20, luks2.Options{UUID: uuid, Keyslots: slots})
	if err != nil {
		t.Fatal(err)
	}
	hdr.Wipe()
}

// patch writes b at off in the file at path.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// prepare runs PrepareTemp on the image at path.
func prepare(t *testing.T, path string, released []byte, opts PrepareOptions) (*TempVolume, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return PrepareTemp(f, released, opts)
}

func inspect(t *testing.T, path string, released []byte) (TempState, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, uuid, err := Inspect(f, released)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return s, uuid
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func needTool(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("%s not installed (scripts/install-deps.sh installs it): %v", path, err)
	}
}
