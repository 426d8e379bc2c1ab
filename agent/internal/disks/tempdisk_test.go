package disks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/anatol/luks.go"

	"github.com/confidant-cvm/confidant/agent/internal/ext4"
	"github.com/confidant-cvm/confidant/shared/luks2"
)

// hkdfSHA256 is RFC 5869 written out with HMAC, independent of crypto/hkdf.
func hkdfSHA256(ikm, salt, info []byte, n int) []byte {
	if len(salt) == 0 {
		salt = make([]byte, sha256.Size)
	}
	ext := hmac.New(sha256.New, salt)
	ext.Write(ikm)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHKDFReference(t *testing.T) {
	// RFC 5869 appendix A.1, checking the reference used below.
	ikm := unhex(t, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")
	salt := unhex(t, "000102030405060708090a0b0c")
	info := unhex(t, "f0f1f2f3f4f5f6f7f8f9")
	want := "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
	if got := hex.EncodeToString(hkdfSHA256(ikm, salt, info, 42)); got != want {
		t.Fatalf("reference HKDF = %s, want RFC 5869 A.1 %s", got, want)
	}
}

func TestTempKey(t *testing.T) {
	released := unhex(t, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	const uuid = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
	got, err := TempKey(released, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if want := hkdfSHA256(released, []byte(uuid), []byte("confidant temp disk v1"), 32); !bytes.Equal(got, want) {
		t.Fatalf("TempKey = %x, want HKDF-SHA256(key, salt=uuid, info) = %x", got, want)
	}
	// Pinned (also computed with Python's hmac): a change here makes every
	// existing temp disk foreign.
	if want := "a1c8c282d46c493adb1446f71cd183383c1b7370323dd5e4247a2aed0f252eb0"; hex.EncodeToString(got) != want {
		t.Errorf("TempKey = %x, want the pinned %s", got, want)
	}
	upper, _ := TempKey(released, strings.ToUpper(uuid))
	if !bytes.Equal(upper, got) {
		t.Error("TempKey depends on the UUID's letter case")
	}
	other, _ := TempKey(released, "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d4")
	if bytes.Equal(other, got) {
		t.Error("TempKey is the same for two UUIDs")
	}
	otherKey, _ := TempKey(append([]byte{1}, released[1:]...), uuid)
	if bytes.Equal(otherKey, got) {
		t.Error("TempKey is the same for two released keys")
	}
	if _, err := TempKey(nil, uuid); err == nil {
		t.Error("TempKey accepted an empty released key")
	}
	if _, err := TempKey(released, ""); err == nil {
		t.Error("TempKey accepted an empty UUID")
	}
}

// fakeSys is a fake /sys and /dev in a temporary directory.
type fakeSys struct {
	sys, dev string
}

func newFakeSys(t *testing.T) fakeSys {
	t.Helper()
	root := t.TempDir()
	fs := fakeSys{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{fs.sys, fs.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareTemp(t *testing.T) {
	type setup func(t *testing.T, path string)
	ours := func(t *testing.T, p string) {
		v, err := prepare(t, p, releasedKey, PrepareOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v.Wipe()
	}
	foreign := func(t *testing.T, p string) { formatLUKS2(t, p, "22222222-3333-4444-8555-666666666666", randomKey(t)) }
	oursForOtherKey := func(t *testing.T, p string) {
		v, err := prepare(t, p, randomKey(t), PrepareOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v.Wipe()
	}
	cryptsetup := func(t *testing.T, p string) {
		needTool(t, "cryptsetup")
		kf := filepath.Join(t.TempDir(), "key")
		os.WriteFile(kf, randomKey(t), 0o600)
		out, err := exec.Command("cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
			"--pbkdf-force-iterations", "1000", "--key-file", kf, p).CombinedOutput()
		if err != nil {
			t.Fatalf("cryptsetup luksFormat: %v\n%s", err, out)
		}
	}
	corrupt := func(t *testing.T, p string) {
		ours(t, p)
		patch(t, p, 4096+30, []byte("!!"))
		patch(t, p, 16384+4096+30, []byte("!!"))
	}
	primaryOnly := func(t *testing.T, p string) {
		ours(t, p)
		patch(t, p, 4096+30, []byte("!!")) // the secondary copy still verifies
	}
	extData := func(t *testing.T, p string) {
		patch(t, p, extSuperblock+extMagicOff, []byte{0x53, 0xef}) // a plain filesystem
	}
	luks1 := func(t *testing.T, p string) {
		patch(t, p, 0, []byte("LUKS\xba\xbe\x00\x01"))
	}

	tests := map[string]struct {
		setup      setup
		size       int64
		allowReset bool
		wantFound  TempState
		wantFormat bool
		wantErr    error
	}{
		"blank":                      {setup: func(*testing.T, string) {}, wantFound: TempBlank, wantFormat: true},
		"plain filesystem is blank":  {setup: extData, wantFound: TempBlank, wantFormat: true},
		"LUKS1 is blank":             {setup: luks1, wantFound: TempBlank, wantFormat: true},
		"ours":                       {setup: ours, wantFound: TempOurs},
		"ours, primary copy damaged": {setup: primaryOnly, wantFound: TempOurs},
		"foreign":                    {setup: foreign, wantErr: ErrForeign},
		"another guest's":            {setup: oursForOtherKey, wantErr: ErrForeign},
		"cryptsetup's":               {setup: cryptsetup, wantErr: ErrForeign},
		"corrupt":                    {setup: corrupt, wantErr: ErrCorrupt},
		"foreign, reset allowed":     {setup: foreign, allowReset: true, wantFound: TempForeign, wantFormat: true},
		"corrupt, reset allowed":     {setup: corrupt, allowReset: true, wantFound: TempCorrupt, wantFormat: true},
		"too small":                  {setup: func(*testing.T, string) {}, size: 17<<20 - 4096, wantErr: ErrTooSmall},
		"smallest":                   {setup: func(*testing.T, string) {}, size: 17 << 20, wantFound: TempBlank, wantFormat: true},
		"odd size":                   {setup: func(*testing.T, string) {}, size: 40<<20 + 512, wantErr: ErrUnexpected},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = imageSize
			}
			p := image(t, size)
			tt.setup(t, p)
			_, before := inspect(t, p, releasedKey)
			v, err := prepare(t, p, releasedKey, PrepareOptions{AllowReset: tt.allowReset})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("PrepareTemp = %+v, %v; want %v", v, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PrepareTemp: %v", err)
			}
			defer v.Wipe()
			if v.Found != tt.wantFound || v.Formatted != tt.wantFormat {
				t.Errorf("found %v, formatted %v; want %v, %v", v.Found, v.Formatted, tt.wantFound, tt.wantFormat)
			}
			// Keyslot 0 of the disk opens with TempKey(released, UUID), to the
			// volume key the TempVolume holds.
			want, _ := TempKey(releasedKey, v.UUID)
			f, _ := os.Open(p)
			vk, hdr, err := luks2.OpenKeyslot(f, want, 0)
			f.Close()
			if err != nil || !bytes.Equal(vk, v.hdr.VolumeKey()) || len(vk) != 64 {
				t.Errorf("keyslot 0 with TempKey(released, UUID): %v; or its volume key is not the TempVolume's", err)
			} else {
				hdr.Wipe()
			}
			if vol := v.Volume(p); vol.DataSize != size-vol.DataOffset || vol.SectorSize != 4096 || checkVolume(vol, v.UUID, size) != nil {
				t.Errorf("volume %+v of the %d-byte disk: %v", vol, size, checkVolume(vol, v.UUID, size))
			}
			if !tt.wantFormat && v.UUID != before {
				t.Errorf("UUID changed from %s to %s on a disk of ours", before, v.UUID)
			}
			if tt.wantFormat && v.UUID == before {
				t.Errorf("formatting kept the UUID %s", before)
			}
			// Whatever happened, the disk is now ours.
			if s, uuid := inspect(t, p, releasedKey); s != TempOurs || uuid != v.UUID {
				t.Errorf("after PrepareTemp the disk is %v %s, want ours %s", s, uuid, v.UUID)
			}
		})
	}
}

// TestTempOpensWithLuksGo formats a temp disk image and opens it with
// another implementation (luks.go, without device-mapper) and with
// cryptsetup, using the derived key.
func TestTempOpensWithLuksGo(t *testing.T) {
	const size = 48 << 20
	p := image(t, size)
	v, err := prepare(t, p, releasedKey, PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Wipe()
	key, err := TempKey(releasedKey, v.UUID)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := luks.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	vol, err := dev.UnsealVolume(0, key)
	if err != nil {
		t.Fatalf("luks.go UnsealVolume: %v", err)
	}
	ours := v.Volume(p)
	if vol.StorageOffset != 1<<20 || vol.StorageSize != size-1<<20 || vol.StorageSectorSize != 4096 ||
		vol.StorageEncryption != "aes-xts-plain64" || vol.LuksType != "LUKS2" || vol.UUID != v.UUID {
		t.Errorf("luks.go volume %+v: want aes-xts-plain64, 4096-byte sectors, data at 1 MiB to the end", vol)
	}
	if uint64(ours.DataOffset) != vol.StorageOffset || uint64(ours.DataSize) != vol.StorageSize || uint64(ours.SectorSize) != vol.StorageSectorSize {
		t.Errorf("our volume %+v differs from luks.go's %+v", ours, vol)
	}
	if _, err := dev.UnsealVolume(0, releasedKey); !errors.Is(err, luks.ErrPassphraseDoesNotMatch) {
		t.Errorf("luks.go unseal with the released key itself = %v, want a mismatch", err)
	}

	needTool(t, "cryptsetup")
	kf := filepath.Join(t.TempDir(), "key")
	os.WriteFile(kf, key, 0o600)
	if out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-slot", "0", "--key-file", kf, p).CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open --test-passphrase: %v\n%s", err, out)
	}
	out, err := exec.Command("cryptsetup", "luksDump", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), v.UUID) || !strings.Contains(string(out), "offset: 1048576 [bytes]") {
		t.Errorf("cryptsetup luksDump: %v\n%s", err, out)
	}
	os.WriteFile(kf, releasedKey, 0o600)
	if err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", kf, p).Run(); err == nil {
		t.Error("cryptsetup opened the temp disk with the released key itself")
	}
}

func TestMkfsAndHasExtFS(t *testing.T) {
	needTool(t, "/bin/busybox")
	needTool(t, "e2fsck")
	for name, mkfs := range map[string][]string{
		"built in":       nil,
		"busybox mke2fs": {"/bin/busybox", "mke2fs", "-F", "-b", "4096", "-I", "256", "-L", TempLabel},
	} {
		t.Run(name, func(t *testing.T) {
			p := image(t, 16<<20)
			if ok, err := HasExtFS(p); err != nil || ok {
				t.Fatalf("HasExtFS of zeros = %v, %v", ok, err)
			}
			if err := makeFS(context.Background(), p, mkfs); err != nil {
				t.Fatalf("makeFS: %v", err)
			}
			if ok, err := HasExtFS(p); err != nil || !ok {
				t.Fatalf("HasExtFS after makeFS = %v, %v", ok, err)
			}
			if out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn: %v\n%s", err, out)
			}
			out, _ := exec.Command("dumpe2fs", "-h", p).CombinedOutput()
			if !strings.Contains(string(out), "Block size:               4096") || !strings.Contains(string(out), "Inode size:	          256") ||
				!strings.Contains(string(out), "Filesystem volume name:   "+TempLabel) {
				t.Errorf("filesystem is not 4096-byte blocks, 256-byte inodes, labelled %s:\n%s", TempLabel, out)
			}
			// The built-in formatter: one inode per 16 KiB (1024 on 16 MiB),
			// ext4 features.
			if mkfs == nil && (!regexp.MustCompile(`(?m)^Inode count:\s+1024$`).Match(out) || !strings.Contains(string(out), "extent") ||
				!strings.Contains(string(out), "uninit_bg")) {
				t.Errorf("built-in filesystem is not ext4 with one inode per 16 KiB:\n%s", out)
			}
		})
	}
	short := image(t, 100)
	if ok, err := HasExtFS(short); err != nil || ok {
		t.Errorf("HasExtFS of a short file = %v, %v", ok, err)
	}
	if err := makeFS(context.Background(), short, nil); !errors.Is(err, ext4.ErrTooSmall) {
		t.Errorf("makeFS of 100 bytes = %v, want ext4.ErrTooSmall", err)
	}
	err := run(context.Background(), []string{"/bin/busybox", "false"}, short)
	if err == nil || !strings.Contains(err.Error(), "busybox false") {
		t.Errorf("run of a failing command = %v", err)
	}
}

func TestMakeSwap(t *testing.T) {
	needTool(t, "/bin/busybox")
	p := filepath.Join(t.TempDir(), "swapfile")
	if err := MakeSwap(context.Background(), p, 1<<20+100, DefaultMkswap()); err != nil {
		t.Fatalf("MakeSwap: %v", err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Size() != 1<<20 || st.Mode().Perm() != 0o600 {
		t.Fatalf("swap file %v, %v: want 1 MiB, mode 0600", st, err)
	}
	b, _ := os.ReadFile(p)
	if string(b[4096-10:4096]) != "SWAPSPACE2" {
		t.Errorf("no swap signature: %q", b[4096-10:4096])
	}
	if err := MakeSwap(context.Background(), p, 1<<20, DefaultMkswap()); err != nil {
		t.Fatalf("MakeSwap again: %v", err)
	}
	if err := MakeSwap(context.Background(), p, 1000, DefaultMkswap()); err == nil {
		t.Error("MakeSwap accepted 1000 bytes")
	}
}
