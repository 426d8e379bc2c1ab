package luks2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	luks "github.com/anatol/luks.go"
)

// ourImage is an image made by EncryptImage with a fast keyslot 0 and an
// argon2id recovery keyslot 1.
type ourImage struct {
	path, keyFile, recoveryFile string
	plain                       []byte // input, zero-padded to the sector
	hdr                         *Header
}

func makeOurImage(t *testing.T, inSize int) ourImage {
	t.Helper()
	dir := t.TempDir()
	in := pattern(inSize)
	img := ourImage{
		path:         filepath.Join(dir, "os.img"),
		keyFile:      writeTemp(t, "key", bytes.Repeat([]byte{0xa5, 0x17}, 16)),
		recoveryFile: writeTemp(t, "recovery", []byte("correct horse battery staple")),
	}
	out, err := os.Create(img.path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	key, rec := readFile(t, img.keyFile), readFile(t, img.recoveryFile)
	img.hdr, err = EncryptImage(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{
		Label: "confidant-os",
		Keyslots: []KeyslotSpec{
			{Passphrase: key, KDF: PBKDF2Fast()},
			{Passphrase: rec, KDF: testArgon2id()},
		},
	}, nil)
	if err != nil {
		t.Fatalf("EncryptImage: %v", err)
	}
	padded := (inSize + 4095) / 4096 * 4096
	img.plain = append(in, make([]byte, padded-inSize)...)
	return img
}

// TestCryptsetupAcceptsOurImage checks an EncryptImage result with the
// reference implementation: it parses the header, opens both keyslots (and
// not a wrong key), recovers the same volume key, and its data area decrypts
// to the input.
func TestCryptsetupAcceptsOurImage(t *testing.T) {
	img := makeOurImage(t, 8<<20-1000)
	wrong := writeTemp(t, "wrong", []byte("not the key"))

	t.Run("luksDump", func(t *testing.T) {
		out := mustCryptsetup(t, "luksDump", img.path)
		for _, want := range []string{
			"Version:       \t2", "UUID:          \t" + img.hdr.UUID, "Label:         \tconfidant-os",
			"offset: 16777216 [bytes]", "sector: 4096 [bytes]", "cipher: aes-xts-plain64",
			"PBKDF:      pbkdf2", "PBKDF:      argon2id", "Area offset:290816 [bytes]", "AF stripes: 4000",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("luksDump output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("test-passphrase", func(t *testing.T) {
		tests := map[string]struct {
			keyFile string
			wantOK  bool
		}{
			"disk key (pbkdf2)":            {img.keyFile, true},
			"recovery passphrase (argon2)": {img.recoveryFile, true},
			"wrong key":                    {wrong, false},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				_, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", tc.keyFile, img.path)
				if (err == nil) != tc.wantOK {
					t.Errorf("cryptsetup open --test-passphrase: err = %v, want success %v", err, tc.wantOK)
				}
			})
		}
	})
	t.Run("dumped volume key decrypts the data", func(t *testing.T) {
		key := dumpVolumeKey(t, img.path, img.recoveryFile)
		if !bytes.Equal(key, img.hdr.VolumeKey()) {
			t.Fatalf("cryptsetup volume key %x, ours %x", key, img.hdr.VolumeKey())
		}
		got := decryptDataArea(t, img.path, key, 16<<20, 4096, len(img.plain))
		if !bytes.Equal(got, img.plain) {
			t.Error("data area decrypted with cryptsetup's volume key differs from the input")
		}
	})
}

// TestCryptsetupReencryptsOurData has cryptsetup decrypt our data area (and
// re-encrypt it under a new volume key, offline, no device-mapper): the
// result must still hold our input, proving cryptsetup reads our sector
// layout, not only our header.
func TestCryptsetupReencryptsOurData(t *testing.T) {
	img := makeOurImage(t, 4<<20)
	mustCryptsetup(t, "reencrypt", "--force-offline-reencrypt", "--key-file", img.keyFile, "--key-slot", "0",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img.path)
	newKey, h, err := Open(openFile(t, img.path), readFile(t, img.keyFile))
	if err != nil {
		t.Fatalf("Open after cryptsetup reencrypt: %v", err)
	}
	if bytes.Equal(newKey, img.hdr.VolumeKey()) {
		t.Fatal("cryptsetup reencrypt kept the volume key")
	}
	got := decryptDataArea(t, img.path, newKey, h.DataOffset, h.SectorSize, len(img.plain))
	if !bytes.Equal(got, img.plain) {
		t.Error("data re-encrypted by cryptsetup no longer decrypts to the input")
	}
}

// TestCryptsetupRepairsCorruptPrimary: with one byte of the primary copy's
// JSON area flipped, Open falls back to the secondary copy and the data
// opens; cryptsetup (open --test-passphrase, as with stock tools) repairs
// the primary from our secondary. Afterwards both copies verify with the
// same sequence id, the primary's JSON area is byte-identical to the one we
// wrote, its binary header differs at most in the salt and checksum that
// cryptsetup writes anew, cryptsetup isLuks and luksDump accept the file,
// and both keyslots still open the same volume key, which decrypts the data.
func TestCryptsetupRepairsCorruptPrimary(t *testing.T) {
	img := makeOurImage(t, 1<<20)
	hdrSize := headerCopySize(t, img.path)
	orig := readPrefix(t, img.path, 2*hdrSize)
	flipByte(t, img.path, binHeaderSize+100)
	if p := readCopyAt(t, img.path, 0, magicPrimary); p.hdr != nil || !p.present {
		t.Fatalf("the flipped byte left the primary copy valid (present %v)", p.present)
	}
	checkOpens(t, img, img.keyFile, "with the primary corrupt")

	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", img.keyFile, img.path)
	repaired := readPrefix(t, img.path, 2*hdrSize)
	p := readCopyAt(t, img.path, 0, magicPrimary)
	s := readCopyAt(t, img.path, hdrSize, magicSecondary)
	if p.hdr == nil || s.hdr == nil {
		t.Fatalf("after cryptsetup: primary %v, secondary %v; want both valid", p.reason, s.reason)
	}
	if p.hdr.seqID != s.hdr.seqID || p.hdr.uuid != img.hdr.UUID || p.hdr.label != "confidant-os" {
		t.Errorf("repaired primary: seqid %d (secondary %d), UUID %q, label %q", p.hdr.seqID, s.hdr.seqID, p.hdr.uuid, p.hdr.label)
	}
	if !bytes.Equal(repaired[binHeaderSize:hdrSize], orig[binHeaderSize:hdrSize]) {
		t.Error("the repaired primary's JSON area differs from the one written")
	}
	if !bytes.Equal(repaired[hdrSize:], orig[hdrSize:]) {
		t.Error("cryptsetup changed the secondary copy while repairing the primary")
	}
	rewritten := func(i int) bool {
		return (i >= offSalt && i < offSalt+headerSaltSize) || (i >= csumOffset && i < csumOffset+sha256.Size)
	}
	for i := range binHeaderSize {
		if repaired[i] != orig[i] && !rewritten(i) {
			t.Errorf("repaired primary's binary header differs at byte %d (%#x, was %#x)", i, repaired[i], orig[i])
			break
		}
	}

	if _, err := cryptsetup(t, "isLuks", "--type", "luks2", img.path); err != nil {
		t.Errorf("cryptsetup isLuks after the repair: %v", err)
	}
	dump := mustCryptsetup(t, "luksDump", img.path)
	for _, want := range []string{"UUID:          \t" + img.hdr.UUID, "  0: luks2", "  1: luks2", "cipher: aes-xts-plain64"} {
		if !strings.Contains(dump, want) {
			t.Errorf("luksDump after the repair lacks %q:\n%s", want, dump)
		}
	}
	checkOpens(t, img, img.keyFile, "after the repair")
	checkOpens(t, img, img.recoveryFile, "after the repair, recovery keyslot")
	if key := dumpVolumeKey(t, img.path, img.recoveryFile); !bytes.Equal(key, img.hdr.VolumeKey()) {
		t.Error("cryptsetup's volume key after the repair differs from ours")
	}
}

// checkOpens opens img with the passphrase in keyFile and checks the
// volume key and that it decrypts the data area to the input.
func checkOpens(t *testing.T, img ourImage, keyFile, when string) {
	t.Helper()
	key, h, err := Open(openFile(t, img.path), readFile(t, keyFile))
	if err != nil {
		t.Fatalf("Open %s: %v", when, err)
	}
	if !bytes.Equal(key, img.hdr.VolumeKey()) {
		t.Fatalf("Open %s: a different volume key", when)
	}
	if got := decryptDataArea(t, img.path, key, h.DataOffset, h.SectorSize, len(img.plain)); !bytes.Equal(got, img.plain) {
		t.Errorf("Open %s: the data area does not decrypt to the input", when)
	}
}

// headerCopySize is the size of one header copy of the image at path (from
// its valid primary).
func headerCopySize(t *testing.T, path string) int64 {
	t.Helper()
	p := readCopyAt(t, path, 0, magicPrimary)
	if p.hdr == nil {
		t.Fatalf("primary copy of %s: %v", path, p.reason)
	}
	return p.hdr.hdrSize
}

func readCopyAt(t *testing.T, path string, off int64, magic string) copyResult {
	t.Helper()
	c, err := readCopy(openFile(t, path), off, magic)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readPrefix(t *testing.T, path string, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := openFile(t, path).ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLuksGoUnsealsOurImage(t *testing.T) {
	img := makeOurImage(t, 1<<20)
	dev, err := luks.Open(img.path)
	if err != nil {
		t.Fatalf("luks.Open: %v", err)
	}
	defer dev.Close()
	if dev.Version() != 2 || dev.UUID() != img.hdr.UUID {
		t.Errorf("luks.go sees version %d UUID %q, want 2 %q", dev.Version(), dev.UUID(), img.hdr.UUID)
	}
	tests := map[string]struct {
		slot    int
		file    string
		wantErr error
	}{
		"disk key in keyslot 0":         {0, img.keyFile, nil},
		"recovery in keyslot 1":         {1, img.recoveryFile, nil},
		"recovery tried on keyslot 0":   {0, img.recoveryFile, luks.ErrPassphraseDoesNotMatch},
		"disk key tried on keyslot 1":   {1, img.keyFile, luks.ErrPassphraseDoesNotMatch},
		"wrong key":                     {0, writeTemp(t, "w", []byte("wrong")), luks.ErrPassphraseDoesNotMatch},
		"a keyslot that does not exist": {2, img.keyFile, errAny},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, err := dev.UnsealVolume(tc.slot, readFile(t, tc.file))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("UnsealVolume: %v", err)
			case tc.wantErr == errAny && err == nil:
				t.Fatal("UnsealVolume succeeded")
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("UnsealVolume = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if v.StorageOffset != 16<<20 || v.StorageSectorSize != 4096 || v.StorageEncryption != Cipher ||
				v.StorageIvTweak != 0 || v.StorageSize != uint64(len(img.plain)) || v.UUID != img.hdr.UUID {
				t.Errorf("luks.go volume = %+v", v)
			}
		})
	}
}

// TestOpenCryptsetupImage opens images cryptsetup formatted, with our Open.
func TestOpenCryptsetupImage(t *testing.T) {
	tests := map[string][]string{
		"pbkdf2 (as the image tool would)": {"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"},
		"argon2id":                         {"--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "1024", "--pbkdf-parallel", "1"},
		"argon2i, 256-bit key, 512-byte sectors": {
			"--pbkdf", "argon2i", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "1024", "--pbkdf-parallel", "2",
			"--key-size", "256", "--sector-size", "512",
		},
		"pbkdf2-sha512, sha512 AF hash": {"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha512"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cs.img")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 20<<20); err != nil {
				t.Fatal(err)
			}
			keyFile := writeTemp(t, "key", []byte("cryptsetup key"))
			mustCryptsetup(t, append(append([]string{"luksFormat", "--type", "luks2", "--key-file", keyFile}, args...), path)...)
			uuid := strings.TrimSpace(mustCryptsetup(t, "luksUUID", path))
			want := dumpVolumeKey(t, path, keyFile)

			f := openFile(t, path)
			key, h, err := Open(f, []byte("cryptsetup key"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(key, want) {
				t.Errorf("Open volume key %x, cryptsetup's %x", key, want)
			}
			if h.UUID != uuid || h.Keyslot != 0 || h.Cipher != Cipher {
				t.Errorf("Open header %+v, want UUID %s keyslot 0", h, uuid)
			}
			if _, _, err := Open(f, []byte("cryptsetup kez")); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("Open with wrong passphrase = %v, want ErrWrongPassphrase", err)
			}
			if ok, u, err := IsLUKS2(f); !ok || u != uuid || err != nil {
				t.Errorf("IsLUKS2 = %v %q %v, want true %q nil", ok, u, err, uuid)
			}
		})
	}
}

// TestDataCipherMatchesCryptsetup checks our sector encryption against
// cryptsetup's own: cryptsetup encrypts a plaintext image in place (offline
// LUKS2 encryption, no device-mapper), then our cipher under the dumped
// volume key must decrypt its data area to the plaintext and encrypt the
// plaintext to exactly its ciphertext.
func TestDataCipherMatchesCryptsetup(t *testing.T) {
	for _, sector := range []string{"4096", "512"} {
		t.Run("sector "+sector, func(t *testing.T) {
			plain := pattern(6 << 20)
			path := writeTemp(t, "plain.img", append(bytes.Clone(plain), make([]byte, 16<<20)...))
			keyFile := writeTemp(t, "key", []byte("k"))
			mustCryptsetup(t, "reencrypt", "--encrypt", "--type", "luks2", "--force-offline-reencrypt",
				"--reduce-device-size", "16M", "--sector-size", sector,
				"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, path)

			key := dumpVolumeKey(t, path, keyFile)
			ours, h, err := Open(openFile(t, path), []byte("k"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(ours, key) {
				t.Fatalf("Open volume key %x, cryptsetup's %x", ours, key)
			}
			if strconv.Itoa(h.SectorSize) != sector {
				t.Fatalf("sector size %d, want %s", h.SectorSize, sector)
			}
			image := readFile(t, path)
			ct := image[h.DataOffset : h.DataOffset+int64(len(plain))]

			dc, err := NewDataCipher(key, h.SectorSize)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(plain))
			if err := dc.DecryptSectors(got, ct, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Error("our decryption of cryptsetup's data area differs from the plaintext")
			}
			if err := dc.EncryptSectors(got, plain, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ct) {
				t.Error("our encryption of the plaintext differs from cryptsetup's ciphertext")
			}
			// A middle slice alone, at its own offset, must match too.
			mid := int64(3<<20 + 3*h.SectorSize)
			part := make([]byte, 4*h.SectorSize)
			if err := dc.EncryptSectors(part, plain[mid:mid+int64(len(part))], mid); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(part, ct[mid:mid+int64(len(part))]) {
				t.Error("encryption at a non-zero offset differs from cryptsetup's")
			}
		})
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
