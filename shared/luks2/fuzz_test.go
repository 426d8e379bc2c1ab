package luks2

import (
	"bytes"
	"embed"
	"testing"
)

// JSON areas cryptsetup 2.6.1 wrote (luksFormat --type luks2 on a file).
//
//go:embed testdata/*.json
var cryptsetupJSON embed.FS

// fuzzLimits keep hostile KDF costs cheap while fuzzing.
func fuzzLimits() limits {
	return limits{maxIterations: 2000, maxMemoryKiB: 64, maxTime: 4, maxThreads: 2}
}

// FuzzReadHeader feeds raw device bytes to the header reader.
func FuzzReadHeader(f *testing.F) {
	opts := minimalOptions("p")
	disk := make(memDisk, opts.DataOffset+4096)
	if _, err := FormatHeader(disk, 4096, opts); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(disk[:2*defaultHeaderSize]))
	f.Add([]byte(disk[defaultHeaderSize : 2*defaultHeaderSize]))
	f.Add([]byte("LUKS\xba\xbe\x00\x02"))
	f.Add(append([]byte("LUKS\xba\xbe\x00\x02\x00\x00\x00\x00\x00\x00\x40\x00"), make([]byte, 5000)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, _, err := IsLUKS2(memDisk(data))
		// A verified copy needs all of its 16 KiB present.
		if ok && (err != nil || len(data) < defaultHeaderSize) {
			t.Errorf("IsLUKS2 = %v, %v on %d bytes", ok, err, len(data))
		}
		if _, _, err := openWith(memDisk(data), []byte("p"), fuzzLimits()); err == nil && len(data) < defaultHeaderSize {
			t.Errorf("Open succeeded on %d bytes", len(data))
		}
	})
}

// FuzzOpenMetadata feeds arbitrary JSON areas, wrapped in header copies with
// valid checksums, to Open and OpenKeyslot over a real keyslot area, so the
// fuzzer reaches the metadata checks, the KDF and the keyslot decryption.
func FuzzOpenMetadata(f *testing.F) {
	opts := minimalOptions("p")
	base := make(memDisk, opts.DataOffset+4096)
	h, err := FormatHeader(base, 4096, opts)
	if err != nil {
		f.Fatal(err)
	}
	c, err := readHeader(base)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.TrimRight(base[binHeaderSize:c.hdrSize], "\x00"), []byte("p"))
	f.Add(bytes.TrimRight(base[binHeaderSize:c.hdrSize], "\x00"), []byte("q"))
	entries, err := cryptsetupJSON.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		js, err := cryptsetupJSON.ReadFile("testdata/" + e.Name())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js, []byte("p"))
	}
	f.Add([]byte(`{"keyslots":{"0":{}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"0","size":"dynamic"}},"digests":{"0":{"keyslots":["0"],"segments":["0"]}},"config":{"json_size":"12288","keyslots_size":"1"}}`), []byte("p"))
	f.Fuzz(func(t *testing.T, js, passphrase []byte) {
		if len(js) >= int(c.hdrSize-binHeaderSize) {
			return
		}
		disk := memDisk(bytes.Clone(base))
		writeCopies(t, disk, c, js)
		if key, hdr, err := openSlotWith(disk, passphrase, 0, fuzzLimits()); err == nil {
			if !bytes.Equal(key, h.VolumeKey()) || hdr.Keyslot != 0 || hdr.DataSize < 0 {
				t.Errorf("OpenKeyslot returned key %x from keyslot %d, data size %d; the volume key is %x", key, hdr.Keyslot, hdr.DataSize, h.VolumeKey())
			}
		}
		key, hdr, err := openWith(disk, passphrase, fuzzLimits())
		if err != nil {
			return
		}
		// The digest vouches for the key, so only the real key comes out.
		if !bytes.Equal(key, h.VolumeKey()) || !bytes.Equal(hdr.VolumeKey(), key) {
			t.Errorf("Open returned key %x, the volume key is %x", key, h.VolumeKey())
		}
	})
}
