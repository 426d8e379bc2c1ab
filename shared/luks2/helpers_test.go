package luks2

import (
	"bytes"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testArgon2id is argon2id at the smallest cost cryptsetup formats with
// (4 passes, 1 MiB, 1 lane), so tests stay fast.
func testArgon2id() KDFSpec {
	return KDFSpec{Type: KDFArgon2id, Time: 4, MemoryKiB: 1024, Threads: 1}
}

// testRand is a deterministic random source.
func testRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

// pattern is recognisable, non-repeating-per-sector test data.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12 + i>>20)
	}
	return b
}

// cryptsetupBin returns the cryptsetup binary; the tests need the real tool.
func cryptsetupBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Fatalf("cryptsetup not found (install cryptsetup-bin, see scripts/install-deps.sh): %v", err)
	}
	return p
}

// cryptsetup runs cryptsetup in batch mode and returns its stdout.
func cryptsetup(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(cryptsetupBin(t), append([]string{"-q"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Logf("cryptsetup %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

func mustCryptsetup(t testing.TB, args ...string) string {
	t.Helper()
	out, err := cryptsetup(t, args...)
	if err != nil {
		t.Fatalf("cryptsetup %s: %v", strings.Join(args, " "), err)
	}
	return out
}

var mkDumpRE = regexp.MustCompile(`(?s)MK dump:\s*((?:[0-9a-f]{2}\s*)+)`)

// dumpVolumeKey asks cryptsetup for the volume key of the image at path.
func dumpVolumeKey(t testing.TB, path, keyFile string) []byte {
	t.Helper()
	out := mustCryptsetup(t, "luksDump", "--dump-volume-key", "--key-file", keyFile, path)
	m := mkDumpRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MK dump in luksDump output:\n%s", out)
	}
	key, err := hex.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	if err != nil {
		t.Fatalf("decoding MK dump: %v", err)
	}
	return key
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// decryptDataArea decrypts n bytes of the data segment of the image at path.
func decryptDataArea(t testing.TB, path string, key []byte, dataOffset int64, sectorSize, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ct := make([]byte, n)
	if _, err := f.ReadAt(ct, dataOffset); err != nil {
		t.Fatalf("reading data area: %v", err)
	}
	dc, err := NewDataCipher(key, sectorSize)
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, n)
	if err := dc.DecryptSectors(pt, ct, 0); err != nil {
		t.Fatal(err)
	}
	return pt
}

// formatFile formats a file of DataOffset + dataSize bytes and returns its path.
func formatFile(t testing.TB, dataSize int64, opts Options) (string, *Header) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := opts.DataOffset
	if off == 0 {
		off = defaultDataOffset
	}
	if err := f.Truncate(off + dataSize); err != nil {
		t.Fatal(err)
	}
	h, err := FormatHeader(f, dataSize, opts)
	if err != nil {
		t.Fatalf("FormatHeader: %v", err)
	}
	return p, h
}

func openFile(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// flipByte xors one byte of the file at off.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// minimalOptions is a small valid layout: one 64-byte-key keyslot and data
// right after it (294912 bytes of header region).
func minimalOptions(pass string) Options {
	return Options{
		Keyslots:   []KeyslotSpec{{Passphrase: []byte(pass), KDF: PBKDF2Fast()}},
		DataOffset: 2*defaultHeaderSize + areaSize(64),
		Rand:       testRand(9),
	}
}

// memDisk is an in-memory device for fuzzing.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}
