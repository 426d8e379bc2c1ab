package disks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/shared/luks2"
	"github.com/confidant-cvm/confidant/shared/testenv"
)

func TestUnsealOS(t *testing.T) {
	p := image(t, imageSize)
	formatLUKS2(t, p, osUUID, releasedKey)
	v, err := UnsealOS(p, strings.ToUpper(osUUID), releasedKey)
	if err != nil {
		t.Fatalf("UnsealOS: %v", err)
	}
	if v.UUID != osUUID || v.Device != p || v.DataOffset != 16<<20 || v.DataSize != imageSize-16<<20 ||
		v.SectorSize != 4096 || v.Cipher != "aes-xts-plain64" || len(v.key) != 64 {
		t.Errorf("volume %+v", v)
	}
	v.Wipe()
	if v.key != nil {
		t.Error("Wipe left the key")
	}
	if err := v.SetupMapper("x"); err == nil {
		t.Error("SetupMapper of a wiped volume succeeded")
	}
	// The released key in keyslot 1 only: keyslot 0 is the one that counts.
	second := image(t, imageSize)
	formatLUKS2(t, second, osUUID, randomKey(t), releasedKey)
	blank := image(t, imageSize)
	// The devices stage finds a disk by the UUID in its binary header; a
	// header whose JSON copies do not verify is refused here.
	corrupt := image(t, imageSize)
	formatLUKS2(t, corrupt, osUUID, releasedKey)
	patch(t, corrupt, 4096+20, []byte("XX"))       // primary JSON
	patch(t, corrupt, 16384+4096+20, []byte("XX")) // secondary JSON
	tests := map[string]struct {
		path, uuid string
		key        []byte
		wantErr    error
	}{
		"corrupt header": {path: corrupt, uuid: osUUID, key: releasedKey, wantErr: luks2.ErrCorruptHeader},
		"wrong key":      {path: p, uuid: osUUID, key: randomKey(t), wantErr: ErrWrongKey},
		"keyslot 1 only": {path: second, uuid: osUUID, key: releasedKey, wantErr: ErrWrongKey},
		"other UUID":     {path: p, uuid: "3f1c2b4a-5d6e-4f70-8192-a3b4c5d6e7f9", key: releasedKey, wantErr: ErrUnexpected},
		"blank":          {path: blank, uuid: osUUID, key: releasedKey, wantErr: ErrUnexpected},
		"missing":        {path: filepath.Join(t.TempDir(), "none"), uuid: osUUID, key: releasedKey, wantErr: os.ErrNotExist},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := UnsealOS(tt.path, tt.uuid, tt.key); !errors.Is(err, tt.wantErr) {
				t.Fatalf("UnsealOS = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCheckVolume(t *testing.T) {
	const devSize = 2 << 20
	good := Volume{UUID: osUUID, Cipher: "aes-xts-plain64", SectorSize: 4096, DataOffset: 1 << 20, DataSize: 1 << 20}
	tests := map[string]struct {
		edit    func(v *Volume)
		wantErr bool
	}{
		"good":               {edit: func(*Volume) {}},
		"512-byte sectors":   {edit: func(v *Volume) { v.SectorSize = 512 }},
		"upper-case UUID":    {edit: func(v *Volume) { v.UUID = strings.ToUpper(osUUID) }},
		"smaller segment":    {edit: func(v *Volume) { v.DataSize = 4096 }},
		"cipher_null":        {edit: func(v *Volume) { v.Cipher = "cipher_null-ecb" }, wantErr: true},
		"aes-cbc":            {edit: func(v *Volume) { v.Cipher = "aes-cbc-essiv:sha256" }, wantErr: true},
		"odd sector":         {edit: func(v *Volume) { v.SectorSize = 3000 }, wantErr: true},
		"other UUID":         {edit: func(v *Volume) { v.UUID = "x" }, wantErr: true},
		"empty":              {edit: func(v *Volume) { v.DataSize = 0 }, wantErr: true},
		"negative":           {edit: func(v *Volume) { v.DataSize = -4096 }, wantErr: true},
		"partial sector":     {edit: func(v *Volume) { v.DataSize = 1<<20 - 512 }, wantErr: true},
		"data at 0":          {edit: func(v *Volume) { v.DataOffset = 0 }, wantErr: true},
		"offset off-sector":  {edit: func(v *Volume) { v.DataOffset = 1<<20 + 512 }, wantErr: true},
		"past the end":       {edit: func(v *Volume) { v.DataSize = 1<<20 + 4096 }, wantErr: true},
		"offset past end":    {edit: func(v *Volume) { v.DataOffset = 4 << 20 }, wantErr: true},
		"overflowing extent": {edit: func(v *Volume) { v.DataSize = 1<<62 - 4096 }, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			v := good
			tt.edit(&v)
			err := checkVolume(&v, osUUID, devSize)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrUnexpected)) {
				t.Fatalf("checkVolume = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestDMUUID: the mapping's UUID is cryptsetup's, which tools (and the
// guest check) read the LUKS UUID from.
func TestDMUUID(t *testing.T) {
	if got, want := dmUUID(osUUID, "confidant-root"), "CRYPT-LUKS2-3f1c2b4a5d6e4f708192a3b4c5d6e7f8-confidant-root"; got != want {
		t.Errorf("dmUUID = %q, want %q", got, want)
	}
}

func TestFindMapping(t *testing.T) {
	fs := newFakeSys(t)
	writeFile(t, filepath.Join(fs.sys, "block/dm-0/dm/name"), "confidant-root\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-0/dev"), "253:0\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-1/dm/name"), "confidant-temp\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-1/dev"), "253:1\n")
	writeFile(t, filepath.Join(fs.sys, "block/vda/dev"), "254:0\n")
	tests := map[string]struct {
		name, wantKernel, wantDev string
		wantErr                   error
	}{
		"root":    {name: "confidant-root", wantKernel: "dm-0", wantDev: "253:0"},
		"temp":    {name: "confidant-temp", wantKernel: "dm-1", wantDev: "253:1"},
		"missing": {name: "confidant-swap", wantErr: ErrNoMapping},
		"prefix":  {name: "confidant", wantErr: ErrNoMapping},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			k, d, err := FindMapping(fs.sys, tt.name)
			if !errors.Is(err, tt.wantErr) || k != tt.wantKernel || d != tt.wantDev {
				t.Fatalf("FindMapping = %q, %q, %v; want %q, %q, %v", k, d, err, tt.wantKernel, tt.wantDev, tt.wantErr)
			}
		})
	}
	writeFile(t, filepath.Join(fs.sys, "block/dm-2/dm/name"), "confidant-root\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-2/dev"), "253:2\n")
	if _, _, err := FindMapping(fs.sys, "confidant-root"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("two mappings of one name: %v, want ErrAmbiguous", err)
	}
	writeFile(t, filepath.Join(fs.sys, "block/dm-3/dm/name"), "bad-dev\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-3/dev"), "253\n")
	if _, _, err := FindMapping(fs.sys, "bad-dev"); err == nil {
		t.Error("FindMapping accepted a malformed dev")
	}
}

func TestMapperNode(t *testing.T) {
	testenv.RequireRoot(t, "mknod of a block device")
	fs := newFakeSys(t)
	writeFile(t, filepath.Join(fs.sys, "block/dm-0/dm/name"), "confidant-root\n")
	writeFile(t, filepath.Join(fs.sys, "block/dm-0/dev"), "253:7\n")
	ctx := context.Background()
	node, err := MapperNode(ctx, fs.sys, fs.dev, "confidant-root")
	if err != nil {
		t.Fatalf("MapperNode: %v", err)
	}
	check := func() {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(node, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 253 || unix.Minor(st.Rdev) != 7 || st.Mode&0o777 != 0o600 {
			t.Fatalf("%s: mode %o rdev %d:%d, want a 0600 block node 253:7", node, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	if node != filepath.Join(fs.dev, "mapper", "confidant-root") {
		t.Errorf("node %s", node)
	}
	check()
	if _, err := MapperNode(ctx, fs.sys, fs.dev, "confidant-root"); err != nil {
		t.Fatalf("MapperNode again: %v", err)
	}
	check()
	// A planted file in its place is replaced.
	os.Remove(node)
	os.WriteFile(node, []byte("not a device"), 0o644)
	if _, err := MapperNode(ctx, fs.sys, fs.dev, "confidant-root"); err != nil {
		t.Fatal(err)
	}
	check()

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := MapperNode(short, fs.sys, fs.dev, "confidant-temp"); !errors.Is(err, ErrNoMapping) {
		t.Errorf("MapperNode of a missing mapping = %v, want ErrNoMapping", err)
	}
	for _, bad := range []string{"", "../x", "a/b", ".."} {
		if _, err := MapperNode(ctx, fs.sys, fs.dev, bad); err == nil {
			t.Errorf("MapperNode(%q) succeeded", bad)
		}
	}
}

func FuzzParseDev(f *testing.F) {
	f.Add("253:0")
	f.Add("253:")
	f.Add(":1")
	f.Add("4294967296:1")
	f.Fuzz(func(t *testing.T, s string) {
		ma, mi, err := parseDev(s)
		if err != nil {
			return
		}
		ma2, mi2, err := parseDev(fmt.Sprintf("%d:%d", ma, mi))
		if err != nil || ma2 != ma || mi2 != mi {
			t.Fatalf("parseDev(%q) = %d:%d does not round-trip", s, ma, mi)
		}
	})
}

// FuzzUnsealOS gives UnsealOS LUKS2 headers with fuzzed JSON metadata and
// a valid checksum, so the parsing past the checksum and the volume checks
// run: it must return an error of its documented kinds, never panic, and
// what it accepts must pass checkVolume.
func FuzzUnsealOS(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.img")
	if err := os.WriteFile(seed, nil, 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.Truncate(seed, imageSize); err != nil {
		f.Fatal(err)
	}
	sf, _ := os.OpenFile(seed, os.O_RDWR, 0)
	hdr, err := luks2.FormatHeader(sf, imageSize-16<<20, luks2.Options{UUID: osUUID,
		Keyslots: []luks2.KeyslotSpec{{Passphrase: releasedKey, KDF: luks2.PBKDF2Fast()}}})
	if err != nil {
		f.Fatal(err)
	}
	hdr.Wipe()
	head := make([]byte, 1<<20)
	sf.ReadAt(head, 0)
	sf.Close()
	jsonArea := head[4096:16384]
	f.Add(bytes.TrimRight(jsonArea, "\x00"))
	f.Add([]byte(`{"keyslots":{"0":{}},"segments":{},"digests":{},"config":{}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, js []byte) {
		if len(js) > 12288 || expensiveKDF(js) {
			return
		}
		img := bytes.Clone(head)
		area := img[4096:16384]
		clear(area)
		copy(area, js)
		// The checksum: sha256 over the 16 KiB copy with the field zeroed.
		clear(img[448 : 448+64])
		sum := sha256.Sum256(img[:16384])
		copy(img[448:], sum[:])
		p := filepath.Join(t.TempDir(), "hdr.img")
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, imageSize); err != nil {
			t.Fatal(err)
		}
		v, err := UnsealOS(p, osUUID, releasedKey)
		if err == nil {
			if v == nil || checkVolume(v, osUUID, imageSize) != nil {
				t.Fatalf("UnsealOS accepted volume %+v", v)
			}
			v.Wipe()
			return
		}
		if !errors.Is(err, ErrUnexpected) && !errors.Is(err, ErrWrongKey) && !errors.Is(err, luks2.ErrCorruptHeader) {
			t.Fatalf("UnsealOS error %v matches none of ErrUnexpected, ErrWrongKey, luks2.ErrCorruptHeader", err)
		}
	})
}

// expensiveKDF reports whether fuzzed metadata could make the unlock slow or
// hungry (argon2, many pbkdf2 iterations, big key sizes): such inputs are
// skipped; shared/luks2's own fuzz target bounds them with limits.
func expensiveKDF(js []byte) bool {
	var v any
	if json.Unmarshal(js, &v) != nil {
		return false // shared/luks2 fails to parse it too
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		case []any:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		case string:
			return strings.Contains(strings.ToLower(x), "argon")
		case float64:
			return x > 5000
		}
		return false
	}
	return walk(v)
}
