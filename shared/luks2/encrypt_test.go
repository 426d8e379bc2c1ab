package luks2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

func TestEncryptImage(t *testing.T) {
	tests := map[string]struct {
		inSize     int
		sectorSize int
	}{
		"one byte":                     {inSize: 1},
		"exact chunks":                 {inSize: 3 * encryptChunk},
		"partial last sector":          {inSize: 2*encryptChunk + 5000},
		"512-byte sectors, odd length": {inSize: encryptChunk + 777, sectorSize: 512},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := pattern(tc.inSize)
			path := filepath.Join(t.TempDir(), "out.img")
			// A stale, longer file must end up exactly sized.
			if err := os.WriteFile(path, bytes.Repeat([]byte{0xff}, 40<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			var mu sync.Mutex
			var calls []int64
			var lastTotal int64
			h, err := EncryptImage(context.Background(), bytes.NewReader(in), int64(len(in)), out, Options{
				Keyslots:   []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}},
				SectorSize: tc.sectorSize,
			}, func(done, total int64) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, done)
				lastTotal = total
			})
			if err != nil {
				t.Fatalf("EncryptImage: %v", err)
			}
			ss := int64(h.SectorSize)
			padded := (int64(len(in)) + ss - 1) / ss * ss
			if st, _ := out.Stat(); st.Size() != h.DataOffset+padded {
				t.Errorf("output size %d, want %d", st.Size(), h.DataOffset+padded)
			}
			if lastTotal != padded || len(calls) == 0 || calls[len(calls)-1] != padded {
				t.Errorf("progress calls %v total %d, want ending at %d", calls, lastTotal, padded)
			}
			for i := 1; i < len(calls); i++ {
				if calls[i] <= calls[i-1] {
					t.Errorf("progress not increasing: %v", calls)
				}
			}
			key, h2, err := Open(out, []byte("k"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(key, h.VolumeKey()) || h2.SectorSize != h.SectorSize {
				t.Fatal("Open disagrees with EncryptImage")
			}
			got := decryptDataArea(t, path, key, h.DataOffset, h.SectorSize, int(padded))
			want := append(bytes.Clone(in), make([]byte, int(padded)-len(in))...)
			if !bytes.Equal(got, want) {
				t.Error("decrypted data differs from the zero-padded input")
			}
		})
	}
}

// cancelingReader cancels the context on its first read.
type cancelingReader struct {
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelingReader) ReadAt(p []byte, _ int64) (int, error) {
	c.once.Do(c.cancel)
	clear(p)
	return len(p), nil
}

func TestEncryptImageFailures(t *testing.T) {
	ks := []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}}
	canceled, cancel := context.WithCancel(context.Background())
	tests := map[string]struct {
		ctx     context.Context
		in      io.ReaderAt
		inSize  int64
		opts    Options
		wantErr error
	}{
		"input shorter than claimed": {
			ctx: context.Background(), in: bytes.NewReader(make([]byte, 1000)), inSize: 3 << 20,
			opts: Options{Keyslots: ks}, wantErr: io.ErrUnexpectedEOF,
		},
		"canceled while encrypting": {
			ctx: canceled, in: &cancelingReader{cancel: cancel}, inSize: 64 << 20,
			opts: Options{Keyslots: ks}, wantErr: context.Canceled,
		},
		"empty input":     {ctx: context.Background(), in: bytes.NewReader(nil), inSize: 0, opts: Options{Keyslots: ks}, wantErr: ErrInvalidOptions},
		"invalid options": {ctx: context.Background(), in: bytes.NewReader(nil), inSize: 4096, opts: Options{}, wantErr: ErrInvalidOptions},
		"bad sector size": {ctx: context.Background(), in: bytes.NewReader(nil), inSize: 4096, opts: Options{Keyslots: ks, SectorSize: 100}, wantErr: ErrInvalidOptions},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := os.Create(filepath.Join(t.TempDir(), "out.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			h, err := EncryptImage(tc.ctx, tc.in, tc.inSize, out, tc.opts, nil)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("EncryptImage = %v, %v; want %v", h, err, tc.wantErr)
			}
			// A failed run must not leave a header that opens.
			if ok, _, _ := IsLUKS2(out); ok {
				t.Error("failed EncryptImage left a LUKS2 header behind")
			}
		})
	}
}

func TestDataCipher(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 64)
	dc, err := NewDataCipher(key, 4096)
	if err != nil {
		t.Fatal(err)
	}
	plain := pattern(4 * 4096)
	ct := make([]byte, len(plain))
	if err := dc.EncryptSectors(ct, plain, 8192); err != nil {
		t.Fatal(err)
	}
	// Sector by sector at their own offsets gives the same bytes: the tweak
	// is the byte offset / 512, advancing by 8 per 4096-byte sector.
	for i := 0; i < 4; i++ {
		one := make([]byte, 4096)
		if err := dc.EncryptSectors(one, plain[i*4096:(i+1)*4096], 8192+int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(one, ct[i*4096:(i+1)*4096]) {
			t.Errorf("sector %d encrypted alone differs", i)
		}
	}
	// Same plaintext at another offset must differ (the tweak is used).
	other := make([]byte, len(plain))
	if err := dc.EncryptSectors(other, plain, 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other[4096:], ct[4096:]) || bytes.Equal(other[:4096], ct[:4096]) {
		t.Error("ciphertext does not depend on the offset")
	}
	// In place works and round-trips.
	buf := bytes.Clone(ct)
	if err := dc.DecryptSectors(buf, buf, 8192); err != nil || !bytes.Equal(buf, plain) {
		t.Errorf("in-place decryption: %v", err)
	}

	bad := map[string]struct {
		dst, src []byte
		offset   int64
	}{
		"misaligned offset":  {make([]byte, 4096), make([]byte, 4096), 512},
		"negative offset":    {make([]byte, 4096), make([]byte, 4096), -4096},
		"partial sector":     {make([]byte, 4096), make([]byte, 4000), 0},
		"short destination":  {make([]byte, 4095), make([]byte, 4096), 0},
		"overlapping shift":  {buf[16:], buf[:8192], 0},
		"overlapping shift2": {buf[:8192], buf[16 : 16+8192], 0},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			if err := dc.EncryptSectors(tc.dst, tc.src, tc.offset); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("EncryptSectors = %v, want ErrInvalidOptions", err)
			}
		})
	}
	for _, k := range [][]byte{nil, make([]byte, 48), make([]byte, 16)} {
		if _, err := NewDataCipher(k, 4096); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewDataCipher with %d-byte key = %v, want ErrInvalidOptions", len(k), err)
		}
	}
	if _, err := NewDataCipher(key, 8192); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewDataCipher with 8192-byte sectors = %v, want ErrInvalidOptions", err)
	}
}

func TestAFSplitMerge(t *testing.T) {
	key := pattern(64)
	for _, name := range []string{"sha1", "sha256", "sha512"} {
		h, _ := hashByName(name)
		split, err := afSplit(key, stripes, h, testRand(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := afMerge(split, len(key), stripes, h); !bytes.Equal(got, key) {
			t.Errorf("%s: merge(split(k)) != k", name)
		}
		split[len(split)/2] ^= 1 // any damaged stripe loses the key
		if got := afMerge(split, len(key), stripes, h); bytes.Equal(got, key) {
			t.Errorf("%s: a damaged stripe still merged to the key", name)
		}
	}
}

// TestEncryptImageRewritesEverything: the output does not depend on what
// the file held before (EncryptImage sizes it without truncating it to
// zero), and its header region is exactly what FormatHeader writes from the
// same randomness (the parallel filler is the sequential one).
func TestEncryptImageRewritesEverything(t *testing.T) {
	in := pattern(3*encryptChunk + 5000)
	opts := func() Options {
		return Options{
			Keyslots: []KeyslotSpec{{Passphrase: []byte("a"), KDF: PBKDF2Fast()}, {Passphrase: []byte("b"), KDF: testArgon2id()}},
			Rand:     testRand(5),
		}
	}
	encrypt := func(stale []byte) []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), "out.img")
		if err := os.WriteFile(path, stale, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		h, err := EncryptImage(context.Background(), bytes.NewReader(in), int64(len(in)), out, opts(), nil)
		if err != nil {
			t.Fatalf("EncryptImage: %v", err)
		}
		h.Wipe()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	fresh := encrypt(nil)
	for name, stale := range map[string][]byte{
		"longer file of 0xff":  bytes.Repeat([]byte{0xff}, 40<<20),
		"same size of 0xff":    bytes.Repeat([]byte{0xff}, len(fresh)),
		"shorter file of 0x5a": bytes.Repeat([]byte{0x5a}, 17<<20),
	} {
		t.Run(name, func(t *testing.T) {
			if got := encrypt(stale); !bytes.Equal(got, fresh) {
				t.Errorf("output over a %d-byte stale file differs from the output to an empty one", len(stale))
			}
		})
	}
	t.Run("header region is FormatHeader's", func(t *testing.T) {
		disk := make(memDisk, defaultDataOffset)
		h, err := FormatHeader(disk, int64(len(fresh))-defaultDataOffset, opts())
		if err != nil {
			t.Fatal(err)
		}
		h.Wipe()
		if !bytes.Equal(fresh[:defaultDataOffset], disk) {
			t.Error("EncryptImage's header region differs from FormatHeader's")
		}
	})
}

// TestEncryptImageFailureErasesOldHeader: a run that fails over a file that
// held a volume leaves no header there either, wherever a copy could be.
func TestEncryptImageFailureErasesOldHeader(t *testing.T) {
	ks := []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}}
	for _, secondaryAt := range secondaryOffsets() {
		t.Run(strconv.FormatInt(secondaryAt, 10), func(t *testing.T) {
			path, h := formatFile(t, 4<<20, Options{Keyslots: ks})
			h.Wipe()
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Also the magic of a secondary copy of another header size, as
			// cryptsetup would look for it when the primary is gone.
			var magic [8]byte
			copy(magic[:], magicSecondary)
			binary.BigEndian.PutUint16(magic[offVersion:], 2)
			if _, err := f.WriteAt(magic[:], secondaryAt); err != nil {
				t.Fatal(err)
			}
			if ok, _, err := IsLUKS2(f); !ok || err != nil {
				t.Fatalf("before: IsLUKS2 = %v, %v; want a volume", ok, err)
			}
			_, err = EncryptImage(context.Background(), bytes.NewReader(make([]byte, 1000)), 3<<20, f, Options{Keyslots: ks}, nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("EncryptImage = %v, want io.ErrUnexpectedEOF", err)
			}
			if ok, _, err := IsLUKS2(f); ok || err != nil {
				t.Errorf("after a failed run: IsLUKS2 = %v, %v; want no header at all", ok, err)
			}
		})
	}
}
