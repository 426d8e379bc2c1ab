package encrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	luks "github.com/anatol/luks.go"

	"github.com/confidant-cvm/confidant/shared/luks2"
)

// testKDF is argon2id at cryptsetup's smallest accepted cost.
func testKDF() luks2.KDFSpec {
	return luks2.KDFSpec{Type: luks2.KDFArgon2id, Time: 4, MemoryKiB: 1024, Threads: 1}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mkfs makes an ext4 image of size bytes with the given block size, holding
// /hello.txt.
func mkfs(t *testing.T, size int64, blockSize string) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello from the encrypted root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-b", blockSize, "-d", root, img)
	return img
}

func TestEncrypt(t *testing.T) {
	input := mkfs(t, 24<<20, "4096")
	outDir := t.TempDir()
	output := filepath.Join(outDir, "os.img")
	if err := os.WriteFile(output, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const uuid = "3f1c2b6a-1111-4222-8333-444455556666"
	var lastDone, lastTotal int64
	res, err := Encrypt(context.Background(), Spec{
		Input:              input,
		Output:             output,
		RecoveryPassphrase: []byte("correct horse battery staple"),
		RecoveryKDF:        testKDF(),
		UUID:               uuid,
		Label:              "confidant-os",
		Progress:           func(done, total int64) { lastDone, lastTotal = done, total },
	}, log)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if res.UUID != uuid || len(res.DiskKey) != DiskKeySize || res.BlockSize != 4096 ||
		res.DataOffset != 16<<20 || res.Size != 16<<20+24<<20 {
		t.Errorf("result = %+v", res)
	}
	if lastDone != 24<<20 || lastTotal != 24<<20 {
		t.Errorf("last progress %d/%d, want %d", lastDone, lastTotal, 24<<20)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("output directory holds %d entries, want only the disk", len(entries))
	}
	for _, secret := range []string{string(res.DiskKey), hex.EncodeToString(res.DiskKey),
		base64.StdEncoding.EncodeToString(res.DiskKey), base64.RawURLEncoding.EncodeToString(res.DiskKey)} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("the log holds the disk key")
		}
	}

	t.Run("decrypted filesystem checks clean and holds the file", func(t *testing.T) {
		f, err := os.Open(output)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		key, hdr, err := luks2.Open(f, res.DiskKey)
		if err != nil {
			t.Fatalf("luks2.Open: %v", err)
		}
		dc, err := luks2.NewDataCipher(key, hdr.SectorSize)
		if err != nil {
			t.Fatal(err)
		}
		ct := make([]byte, 24<<20)
		if _, err := f.ReadAt(ct, hdr.DataOffset); err != nil {
			t.Fatal(err)
		}
		if err := dc.DecryptSectors(ct, ct, 0); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, want) {
			t.Fatal("decrypted data area differs from the input image")
		}
		plain := filepath.Join(t.TempDir(), "plain.img")
		if err := os.WriteFile(plain, ct, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "e2fsck", "-fn", plain)
		if got := run(t, "debugfs", "-R", "cat /hello.txt", plain); !strings.Contains(got, "hello from the encrypted root") {
			t.Errorf("debugfs cat /hello.txt = %q", got)
		}
	})
	t.Run("cryptsetup takes the recovery passphrase", func(t *testing.T) {
		rec := filepath.Join(t.TempDir(), "rec")
		if err := os.WriteFile(rec, []byte("correct horse battery staple"), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "cryptsetup", "open", "--test-passphrase", "--key-slot", "1", "--key-file", rec, output)
	})
	t.Run("luks.go unseals keyslot 0 with the disk key", func(t *testing.T) {
		dev, err := luks.Open(output)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		if _, err := dev.UnsealVolume(0, res.DiskKey); err != nil {
			t.Errorf("UnsealVolume(0, disk key): %v", err)
		}
		if _, err := dev.UnsealVolume(0, []byte("correct horse battery staple")); !errors.Is(err, luks.ErrPassphraseDoesNotMatch) {
			t.Errorf("UnsealVolume(0, recovery) = %v, want ErrPassphraseDoesNotMatch", err)
		}
	})
}

func TestEncryptRefuses(t *testing.T) {
	good := mkfs(t, 8<<20, "4096")
	small := mkfs(t, 8<<20, "1024")
	truncated := filepath.Join(t.TempDir(), "truncated.img")
	if b, err := os.ReadFile(good); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(truncated, b[:4<<20], 0o600); err != nil {
		t.Fatal(err)
	}
	random := filepath.Join(t.TempDir(), "random.img")
	if err := os.WriteFile(random, bytes.Repeat([]byte("not a filesystem"), 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		ctx     context.Context
		spec    Spec
		wantErr error
	}{
		"1024-byte blocks":       {spec: Spec{Input: small}, wantErr: ErrBlockSize},
		"truncated image":        {spec: Spec{Input: truncated}, wantErr: ErrTruncated},
		"not a filesystem":       {spec: Spec{Input: random}, wantErr: ErrNotExt4},
		"short disk key":         {spec: Spec{Input: good, DiskKey: []byte("short")}, wantErr: luks2.ErrInvalidOptions},
		"bad recovery KDF":       {spec: Spec{Input: good, RecoveryPassphrase: []byte("r"), RecoveryKDF: luks2.KDFSpec{Type: "scrypt"}}, wantErr: luks2.ErrInvalidOptions},
		"canceled":               {ctx: canceled, spec: Spec{Input: good}, wantErr: context.Canceled},
		"missing input":          {spec: Spec{Input: filepath.Join(t.TempDir(), "nope")}, wantErr: os.ErrNotExist},
		"output dir missing":     {spec: Spec{Input: good, Output: filepath.Join(t.TempDir(), "no", "os.img")}, wantErr: os.ErrNotExist},
		"any filesystem allowed": {spec: Spec{Input: random, AnyFilesystem: true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			outDir := t.TempDir()
			if tc.spec.Output == "" {
				tc.spec.Output = filepath.Join(outDir, "os.img")
			}
			tc.spec.RecoveryKDF = cmpKDF(tc.spec.RecoveryKDF)
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			res, err := Encrypt(ctx, tc.spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Encrypt = %+v, %v; want %v", res, err, tc.wantErr)
			}
			entries, _ := os.ReadDir(outDir)
			if err != nil && len(entries) != 0 {
				t.Errorf("failed Encrypt left %d files behind", len(entries))
			}
		})
	}
}

func cmpKDF(k luks2.KDFSpec) luks2.KDFSpec {
	if k == (luks2.KDFSpec{}) {
		return testKDF()
	}
	return k
}

func TestParseSuperblock(t *testing.T) {
	sb := func(logBS, blocksLo, incompat, blocksHi uint32) []byte {
		b := make([]byte, sbSize)
		b[sbMagic], b[sbMagic+1] = 0x53, 0xef
		put32(b[sbLogBlockSize:], logBS)
		put32(b[sbBlocksLo:], blocksLo)
		put32(b[sbIncompat:], incompat)
		put32(b[sbBlocksHi:], blocksHi)
		return b
	}
	tests := map[string]struct {
		sb       []byte
		wantSize int64
		wantErr  error
	}{
		"4 KiB blocks":           {sb: sb(2, 100, 0, 0), wantSize: 100 * 4096},
		"64-bit block count":     {sb: sb(2, 0, incompat64Bit, 1), wantSize: 1 << 32 * 4096},
		"hi ignored without 64b": {sb: sb(2, 5, 0, 1), wantSize: 5 * 4096},
		"1 KiB blocks":           {sb: sb(0, 100, 0, 0), wantErr: ErrBlockSize},
		"no magic":               {sb: make([]byte, sbSize), wantErr: ErrNotExt4},
		"absurd block size":      {sb: sb(40, 100, 0, 0), wantErr: ErrNotExt4},
		"zero blocks":            {sb: sb(2, 0, 0, 0), wantErr: ErrNotExt4},
		"overflowing count":      {sb: sb(6, 0, incompat64Bit, 0xffffffff), wantErr: ErrNotExt4},
		"short":                  {sb: []byte{1, 2}, wantErr: ErrNotExt4},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			info, err := parseSuperblock(tc.sb)
			if !errors.Is(err, tc.wantErr) || info.size != tc.wantSize {
				t.Errorf("parseSuperblock = %+v, %v; want size %d, %v", info, err, tc.wantSize, tc.wantErr)
			}
		})
	}
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func FuzzParseSuperblock(f *testing.F) {
	b := make([]byte, sbSize)
	b[sbMagic], b[sbMagic+1] = 0x53, 0xef
	b[sbLogBlockSize] = 2
	b[sbBlocksLo] = 10
	f.Add(b)
	f.Fuzz(func(t *testing.T, sb []byte) {
		info, err := parseSuperblock(sb)
		if err == nil && (info.blockSize < sectorSize || info.size <= 0) {
			t.Errorf("accepted %+v", info)
		}
	})
}

// TestSelfCheckCatchesBadDisk: the read-back check refuses a disk whose data
// or key does not match, so a bug in the writer cannot ship a bad disk.
func TestSelfCheckCatchesBadDisk(t *testing.T) {
	input := mkfs(t, 8<<20, "4096")
	in, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, _ := in.Stat()
	tests := map[string]struct {
		damage  func(t *testing.T, disk *os.File, hdr *luks2.Header)
		key     []byte
		wantErr error
	}{
		"intact":                 {key: []byte("disk key 0123456789")},
		"first sector damaged":   {damage: flipAt(16<<20 + 10), key: []byte("disk key 0123456789"), wantErr: ErrSelfCheck},
		"last sector damaged":    {damage: flipAt(16<<20 + 8<<20 - 10), key: []byte("disk key 0123456789"), wantErr: ErrSelfCheck},
		"header of another disk": {damage: func(_ *testing.T, _ *os.File, h *luks2.Header) { h.VolumeKey()[0] ^= 1 }, key: []byte("disk key 0123456789"), wantErr: ErrSelfCheck},
		"wrong disk key":         {key: []byte("another key 0123456"), wantErr: ErrSelfCheck},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			disk, err := os.Create(filepath.Join(t.TempDir(), "os.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer disk.Close()
			hdr, err := luks2.EncryptImage(context.Background(), in, st.Size(), disk, luks2.Options{
				Keyslots: []luks2.KeyslotSpec{{Passphrase: []byte("disk key 0123456789"), KDF: luks2.PBKDF2Fast()}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage != nil {
				tc.damage(t, disk, hdr)
			}
			if err := selfCheck(disk, in, st.Size(), tc.key, hdr); !errors.Is(err, tc.wantErr) {
				t.Errorf("selfCheck = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func flipAt(off int64) func(*testing.T, *os.File, *luks2.Header) {
	return func(t *testing.T, f *os.File, _ *luks2.Header) {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}
