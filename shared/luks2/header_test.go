package luks2

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestHeaderCopies(t *testing.T) {
	const hs = defaultHeaderSize
	tests := map[string]struct {
		damage  []int64 // byte offsets to flip
		wipe    []int64 // offsets of magics to zero
		wantErr error
	}{
		"intact":                       {},
		"primary JSON corrupt":         {damage: []int64{binHeaderSize + 100}},
		"primary label corrupt":        {damage: []int64{offLabel}},
		"primary checksum corrupt":     {damage: []int64{csumOffset + 3}},
		"primary header size corrupt":  {damage: []int64{offHdrSize + 6}},
		"primary magic gone":           {wipe: []int64{0}},
		"secondary JSON corrupt":       {damage: []int64{hs + binHeaderSize + 100}},
		"secondary magic gone":         {wipe: []int64{hs}},
		"both corrupt":                 {damage: []int64{binHeaderSize + 100, hs + binHeaderSize + 100}, wantErr: ErrCorruptHeader},
		"primary gone, secondary bad":  {wipe: []int64{0}, damage: []int64{hs + 200}, wantErr: ErrCorruptHeader},
		"both magics gone":             {wipe: []int64{0, hs}, wantErr: ErrNotLUKS2},
		"secondary offset field wrong": {damage: []int64{hs + offHdrOffset + 7, binHeaderSize + 1}, wantErr: ErrCorruptHeader},
		"primary version changed":      {damage: []int64{offVersion + 1}},
		"both versions changed":        {damage: []int64{offVersion + 1, hs + offVersion + 1}, wantErr: ErrNotLUKS2},
		"keyslots filler damaged":      {damage: []int64{2*hs + 300000}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path, h := formatFile(t, 4096, Options{
				Keyslots: []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}},
				Label:    "x",
			})
			for _, off := range tc.damage {
				flipByte(t, path, off)
			}
			for _, off := range tc.wipe {
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(make([]byte, 6), off); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			f := openFile(t, path)
			key, got, err := Open(f, []byte("k"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (!bytes.Equal(key, h.VolumeKey()) || got.UUID != h.UUID || got.Label != "x") {
				t.Errorf("Open = %+v, want the formatted header and key", got)
			}
			ok, uuid, err := IsLUKS2(f)
			wantIsErr := tc.wantErr
			if errors.Is(wantIsErr, ErrNotLUKS2) {
				wantIsErr = nil
			}
			if !errors.Is(err, wantIsErr) || ok != (tc.wantErr == nil) || (ok && uuid != h.UUID) {
				t.Errorf("IsLUKS2 = %v, %q, %v; want %v, %v", ok, uuid, err, tc.wantErr == nil, wantIsErr)
			}
		})
	}
}

func TestHeaderCopyWithHigherSequenceWins(t *testing.T) {
	tests := map[string]struct {
		primarySeq, secondarySeq uint64
		wantLabel                string
	}{
		"secondary newer": {1, 2, "secondary"},
		"primary newer":   {3, 2, "primary"},
		"tie: primary":    {5, 5, "primary"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := minimalOptions("p")
			disk := make(memDisk, opts.DataOffset+4096)
			if _, err := FormatHeader(disk, 4096, opts); err != nil {
				t.Fatal(err)
			}
			c, err := readHeader(disk)
			if err != nil {
				t.Fatal(err)
			}
			js := bytes.TrimRight(disk[binHeaderSize:c.hdrSize], "\x00")
			salt := make([]byte, headerSaltSize)
			copy(disk, encodeCopy(c.hdrSize, magicPrimary, tc.primarySeq, "primary", "", c.uuid, salt, 0, js))
			copy(disk[c.hdrSize:], encodeCopy(c.hdrSize, magicSecondary, tc.secondarySeq, "secondary", "", c.uuid, salt, c.hdrSize, js))
			_, h, err := Open(disk, []byte("p"))
			if err != nil {
				t.Fatal(err)
			}
			if h.Label != tc.wantLabel {
				t.Errorf("Open used the %s copy, want %s", h.Label, tc.wantLabel)
			}
		})
	}
}

// TestHeaderCopyAtWrongOffset: a copy with a valid checksum that claims to
// live elsewhere (a header image copied to the wrong place) is not used.
func TestHeaderCopyAtWrongOffset(t *testing.T) {
	opts := minimalOptions("p")
	disk := make(memDisk, opts.DataOffset+4096)
	if _, err := FormatHeader(disk, 4096, opts); err != nil {
		t.Fatal(err)
	}
	c, err := readHeader(disk)
	if err != nil {
		t.Fatal(err)
	}
	js := bytes.TrimRight(disk[binHeaderSize:c.hdrSize], "\x00")
	copy(disk[c.hdrSize:], encodeCopy(c.hdrSize, magicSecondary, 1, "", "", c.uuid, make([]byte, headerSaltSize), 2*c.hdrSize, js))
	disk[binHeaderSize+5] ^= 1 // primary unusable
	if _, _, err := Open(disk, []byte("p")); !errors.Is(err, ErrCorruptHeader) {
		t.Errorf("Open = %v, want ErrCorruptHeader", err)
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestIsLUKS2(t *testing.T) {
	ours, h := formatFile(t, 4096, minimalOptions("p"))
	corrupt, _ := formatFile(t, 4096, minimalOptions("p"))
	flipByte(t, corrupt, binHeaderSize+10)
	flipByte(t, corrupt, defaultHeaderSize+binHeaderSize+10)

	luks1 := filepath.Join(t.TempDir(), "luks1.img")
	if err := os.WriteFile(luks1, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCryptsetup(t, "luksFormat", "--type", "luks1", "--pbkdf-force-iterations", "1000",
		"--key-file", writeTemp(t, "k", []byte("k")), luks1)

	random := make([]byte, 1<<20)
	if _, err := io.ReadFull(testRand(3), random); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		r        io.ReaderAt
		want     bool
		wantUUID string
		wantErr  error
	}{
		"our volume":          {r: openFile(t, ours), want: true, wantUUID: h.UUID},
		"blank disk":          {r: make(memDisk, 1<<20)},
		"random bytes":        {r: memDisk(random)},
		"smaller than 4 KiB":  {r: memDisk(bytes.Repeat([]byte("LUKS\xba\xbe\x00\x02"), 10))},
		"empty":               {r: memDisk(nil)},
		"LUKS1 volume":        {r: openFile(t, luks1)},
		"both copies corrupt": {r: openFile(t, corrupt), wantErr: ErrCorruptHeader},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ok, uuid, err := IsLUKS2(tc.r)
			if !errors.Is(err, tc.wantErr) || ok != tc.want || uuid != tc.wantUUID {
				t.Errorf("IsLUKS2 = %v, %q, %v; want %v, %q, %v", ok, uuid, err, tc.want, tc.wantUUID, tc.wantErr)
			}
		})
	}
	t.Run("I/O error is not blank", func(t *testing.T) {
		ok, _, err := IsLUKS2(failingReader{})
		if err == nil || ok || errors.Is(err, ErrCorruptHeader) {
			t.Errorf("IsLUKS2 on a failing device = %v, %v; want a plain I/O error", ok, err)
		}
	})
}
