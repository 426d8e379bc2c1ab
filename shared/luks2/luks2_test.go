package luks2

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestFormatHeaderThenOpen(t *testing.T) {
	key32 := bytes.Repeat([]byte{0x42}, 32)
	tests := map[string]struct {
		opts       Options
		passphrase string
		wantSlot   int
		wantKey    []byte
		wantSector int
		wantOffset int64
	}{
		"defaults, one pbkdf2 keyslot": {
			opts:       Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("disk key"), KDF: PBKDF2Fast()}}},
			passphrase: "disk key",
			wantSlot:   0,
			wantSector: 4096,
			wantOffset: 16 << 20,
		},
		"recovery passphrase in argon2id keyslot 1": {
			opts: Options{Keyslots: []KeyslotSpec{
				{Passphrase: []byte("disk key"), KDF: PBKDF2Fast()},
				{Passphrase: []byte("correct horse"), KDF: testArgon2id()},
			}},
			passphrase: "correct horse",
			wantSlot:   1,
			wantSector: 4096,
			wantOffset: 16 << 20,
		},
		"given 32-byte key, 512-byte sectors, tight offset": {
			opts: Options{
				Keyslots:   []KeyslotSpec{{Passphrase: []byte("k"), KDF: PBKDF2Fast()}},
				VolumeKey:  key32,
				SectorSize: 512,
				DataOffset: 2*defaultHeaderSize + areaSize(32),
				UUID:       "01234567-89ab-cdef-0123-456789abcdef",
				Label:      "os",
				Subsystem:  "confidant",
			},
			passphrase: "k",
			wantSlot:   0,
			wantKey:    key32,
			wantSector: 512,
			wantOffset: 2*defaultHeaderSize + areaSize(32),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path, h := formatFile(t, 1<<20, tc.opts)
			if tc.wantKey != nil && !bytes.Equal(h.VolumeKey(), tc.wantKey) {
				t.Errorf("FormatHeader volume key = %x, want %x", h.VolumeKey(), tc.wantKey)
			}
			if h.DataOffset != tc.wantOffset || h.SectorSize != tc.wantSector || h.Keyslot != -1 {
				t.Errorf("FormatHeader header = %+v, want offset %d sector %d keyslot -1", h, tc.wantOffset, tc.wantSector)
			}
			if tc.opts.UUID != "" && h.UUID != tc.opts.UUID {
				t.Errorf("UUID = %q, want %q", h.UUID, tc.opts.UUID)
			}
			f := openFile(t, path)
			key, got, err := Open(f, []byte(tc.passphrase))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(key, h.VolumeKey()) || !bytes.Equal(got.VolumeKey(), key) {
				t.Errorf("Open volume key = %x, want %x", key, h.VolumeKey())
			}
			if got.Keyslot != tc.wantSlot {
				t.Errorf("Open keyslot = %d, want %d", got.Keyslot, tc.wantSlot)
			}
			if got.UUID != h.UUID || got.Label != tc.opts.Label || got.Subsystem != tc.opts.Subsystem ||
				got.DataOffset != tc.wantOffset || got.SectorSize != tc.wantSector || got.Cipher != Cipher ||
				!slices.Equal(got.Keyslots, h.Keyslots) {
				t.Errorf("Open header = %+v, want %+v", got, h)
			}
			if _, _, err := Open(f, []byte(tc.passphrase+"x")); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("Open with wrong passphrase: %v, want ErrWrongPassphrase", err)
			}
			ok, uuid, err := IsLUKS2(f)
			if err != nil || !ok || uuid != h.UUID {
				t.Errorf("IsLUKS2 = %v, %q, %v; want true, %q, nil", ok, uuid, err, h.UUID)
			}
			got.Wipe()
			if got.VolumeKey() != nil || !bytes.Equal(key, make([]byte, len(key))) {
				t.Error("Wipe left the volume key in place")
			}
		})
	}
}

func TestFormatHeaderIsDeterministicGivenRand(t *testing.T) {
	opts := minimalOptions("p")
	a := make(memDisk, opts.DataOffset+4096)
	b := make(memDisk, opts.DataOffset+4096)
	if _, err := FormatHeader(a, 4096, opts); err != nil {
		t.Fatal(err)
	}
	opts.Rand = testRand(9)
	if _, err := FormatHeader(b, 4096, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("same Rand produced different headers")
	}
	opts.Rand = testRand(10)
	c := make(memDisk, opts.DataOffset+4096)
	if _, err := FormatHeader(c, 4096, opts); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[:opts.DataOffset], c[:opts.DataOffset]) {
		t.Error("different Rand produced the same header")
	}
}

func TestFormatHeaderRejectsInvalidOptions(t *testing.T) {
	good := func() Options {
		return Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("p"), KDF: PBKDF2Fast()}}}
	}
	tests := map[string]struct {
		mutate   func(*Options)
		dataSize int64
		wantMsg  string
	}{
		"no keyslots":          {mutate: func(o *Options) { o.Keyslots = nil }, wantMsg: "0 keyslots"},
		"33 keyslots":          {mutate: func(o *Options) { o.Keyslots = slices.Repeat(o.Keyslots, 33) }, wantMsg: "33 keyslots"},
		"empty passphrase":     {mutate: func(o *Options) { o.Keyslots[0].Passphrase = nil }, wantMsg: "empty passphrase"},
		"unknown kdf":          {mutate: func(o *Options) { o.Keyslots[0].KDF.Type = "scrypt" }, wantMsg: "KDF type"},
		"pbkdf2 999":           {mutate: func(o *Options) { o.Keyslots[0].KDF.Iterations = 999 }, wantMsg: "iterations 999"},
		"argon2id time 3":      {mutate: func(o *Options) { o.Keyslots[0].KDF = KDFSpec{Type: KDFArgon2id, Time: 3, MemoryKiB: 1024, Threads: 1} }, wantMsg: "time 3"},
		"argon2id 5 threads":   {mutate: func(o *Options) { o.Keyslots[0].KDF = KDFSpec{Type: KDFArgon2id, Time: 4, MemoryKiB: 1024, Threads: 5} }, wantMsg: "threads 5"},
		"argon2id 16 KiB":      {mutate: func(o *Options) { o.Keyslots[0].KDF = KDFSpec{Type: KDFArgon2id, Time: 4, MemoryKiB: 16, Threads: 1} }, wantMsg: "memory 16"},
		"48-byte volume key":   {mutate: func(o *Options) { o.VolumeKey = make([]byte, 48) }, wantMsg: "32 or 64 bytes"},
		"sector 1000":          {mutate: func(o *Options) { o.SectorSize = 1000 }, wantMsg: "sector size 1000"},
		"misaligned offset":    {mutate: func(o *Options) { o.DataOffset = 1<<20 + 512 }, wantMsg: "multiple of 4096"},
		"offset too small":     {mutate: func(o *Options) { o.DataOffset = 64 << 10 }, wantMsg: "no room"},
		"bad uuid":             {mutate: func(o *Options) { o.UUID = "not-a-uuid" }, wantMsg: "UUID"},
		"label too long":       {mutate: func(o *Options) { o.Label = strings.Repeat("l", 48) }, wantMsg: "label"},
		"subsystem with NUL":   {mutate: func(o *Options) { o.Subsystem = "a\x00b" }, wantMsg: "subsystem"},
		"data size unaligned":  {dataSize: 4096 + 512, wantMsg: "data size"},
		"data size zero":       {dataSize: -1, wantMsg: "data size 0"},
		"two problems at once": {mutate: func(o *Options) { o.SectorSize = 3; o.Label = strings.Repeat("l", 99) }, wantMsg: "label"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := good()
			if tc.mutate != nil {
				tc.mutate(&opts)
			}
			size := tc.dataSize
			switch size {
			case 0:
				size = 1 << 20
			case -1:
				size = 0
			}
			disk := make(memDisk, 1)
			h, err := FormatHeader(disk, size, opts)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("FormatHeader = %v, %v; want ErrInvalidOptions", h, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
		})
	}
	if _, err := FormatHeader(make(memDisk, 1<<20), 1<<20, Options{
		Keyslots: good().Keyslots, SectorSize: 3, Label: strings.Repeat("l", 99),
	}); err == nil || !strings.Contains(err.Error(), "sector size 3") || !strings.Contains(err.Error(), "label") {
		t.Errorf("FormatHeader did not report every problem at once: %v", err)
	}
}

func TestOpenRejectsTamperedKeyslot(t *testing.T) {
	path, h := formatFile(t, 1<<20, minimalOptions("p"))
	// Flip one byte of the encrypted split key: the merged key no longer
	// matches the digest, so the right passphrase must fail.
	flipByte(t, path, 2*defaultHeaderSize+1000)
	_, _, err := Open(openFile(t, path), []byte("p"))
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open of tampered keyslot = %v, want ErrWrongPassphrase (volume key %x)", err, h.VolumeKey())
	}
}

// rewriteMeta re-encodes both header copies of the image at path with the
// JSON area edit returns, keeping checksums valid, so that the code under
// test sees hostile metadata rather than a checksum failure.
func rewriteMeta(t testing.TB, path string, edit func(m map[string]any)) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c.meta)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if js, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	writeCopies(t, f, c, js)
}

func writeCopies(t testing.TB, w interface {
	WriteAt([]byte, int64) (int, error)
}, c *headerCopy, js []byte) {
	t.Helper()
	salt := make([]byte, headerSaltSize)
	for _, cp := range []struct {
		magic string
		off   int64
	}{{magicPrimary, 0}, {magicSecondary, c.hdrSize}} {
		if _, err := w.WriteAt(encodeCopy(c.hdrSize, cp.magic, c.seqID, c.label, c.subsystem, c.uuid, salt, cp.off, js), cp.off); err != nil {
			t.Fatal(err)
		}
	}
}

func obj(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m = m[p].(map[string]any)
	}
	return m
}

func TestOpenRejectsHostileMetadata(t *testing.T) {
	tests := map[string]struct {
		edit    func(m map[string]any)
		wantErr error
	}{
		"argon2 memory above 4 GiB": {
			edit: func(m map[string]any) {
				obj(m, "keyslots", "0")["kdf"] = map[string]any{"type": "argon2id", "time": 4, "memory": 5 << 20, "cpus": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="}
			},
			wantErr: ErrCorruptHeader,
		},
		"pbkdf2 iterations above 2^32-1": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["iterations"] = uint64(1) << 33 },
			wantErr: ErrCorruptHeader,
		},
		"zero iterations": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["iterations"] = 0 },
			wantErr: ErrCorruptHeader,
		},
		"unknown kdf": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["type"] = "scrypt" },
			wantErr: ErrUnsupported,
		},
		"keyslot cipher not xts": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "area")["encryption"] = "aes-cbc-essiv:sha256" },
			wantErr: ErrUnsupported,
		},
		"stripes not 4000": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "af")["stripes"] = 4001 },
			wantErr: ErrUnsupported,
		},
		"huge key size": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0")["key_size"] = 1 << 30 },
			wantErr: ErrCorruptHeader,
		},
		"area smaller than split key": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "area")["size"] = "4096" },
			wantErr: ErrCorruptHeader,
		},
		"area beyond the device": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0", "area")["offset"] = "1099511627776" },
			wantErr: errAny,
		},
		"digest not bound to segment 0": {
			edit:    func(m map[string]any) { obj(m, "digests", "0")["segments"] = []any{} },
			wantErr: ErrUnsupported,
		},
		"digest with bad base64": {
			edit:    func(m map[string]any) { obj(m, "digests", "0")["digest"] = "!!" },
			wantErr: ErrCorruptHeader,
		},
		"reencryption requirement": {
			edit: func(m map[string]any) {
				obj(m, "config")["requirements"] = map[string]any{"mandatory": []any{"online-reencrypt-v2"}}
			},
			wantErr: ErrUnsupported,
		},
		"iv_tweak not 0": {
			edit:    func(m map[string]any) { obj(m, "segments", "0")["iv_tweak"] = "8" },
			wantErr: ErrUnsupported,
		},
		"json_size lies": {
			edit:    func(m map[string]any) { obj(m, "config")["json_size"] = "4096" },
			wantErr: ErrCorruptHeader,
		},
		"keyslot id 32": {
			edit: func(m map[string]any) {
				ks := obj(m, "keyslots")
				ks["32"] = ks["0"]
			},
			wantErr: ErrCorruptHeader,
		},
		"digest names a missing keyslot": {
			edit:    func(m map[string]any) { obj(m, "digests", "0")["keyslots"] = []any{"0", "7"} },
			wantErr: ErrCorruptHeader,
		},
		"segment section missing": {
			edit:    func(m map[string]any) { delete(m, "segments") },
			wantErr: ErrCorruptHeader,
		},
		"string where a number belongs": {
			edit:    func(m map[string]any) { obj(m, "keyslots", "0")["key_size"] = "64" },
			wantErr: ErrCorruptHeader,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path, _ := formatFile(t, 4096, minimalOptions("p"))
			rewriteMeta(t, path, tc.edit)
			_, _, err := Open(openFile(t, path), []byte("p"))
			if err == nil {
				t.Fatal("Open of hostile header succeeded")
			}
			if tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
				t.Errorf("Open = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// errAny marks cases where any error will do.
var errAny = errors.New("any error")

func TestOpenSkipsBrokenKeyslot(t *testing.T) {
	opts := Options{Keyslots: []KeyslotSpec{
		{Passphrase: []byte("a"), KDF: PBKDF2Fast()},
		{Passphrase: []byte("b"), KDF: PBKDF2Fast()},
	}}
	path, h := formatFile(t, 4096, opts)
	rewriteMeta(t, path, func(m map[string]any) { obj(m, "keyslots", "0", "kdf")["type"] = "scrypt" })
	f := openFile(t, path)
	key, got, err := Open(f, []byte("b"))
	if err != nil || got.Keyslot != 1 || !bytes.Equal(key, h.VolumeKey()) {
		t.Errorf("Open via keyslot 1 = %v, %v; want keyslot 1 and the volume key", got, err)
	}
	if _, _, err := Open(f, []byte("a")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with the broken keyslot's passphrase = %v, want ErrWrongPassphrase", err)
	}
}

func TestOpenKeyslotPriority(t *testing.T) {
	opts := Options{Keyslots: []KeyslotSpec{
		{Passphrase: []byte("same"), KDF: PBKDF2Fast()},
		{Passphrase: []byte("same"), KDF: PBKDF2Fast()},
	}}
	tests := map[string]struct {
		prio     [2]any // nil: unset
		wantSlot int
		wantErr  error
	}{
		"both normal: lowest number":   {wantSlot: 0},
		"slot 1 high":                  {prio: [2]any{nil, 2}, wantSlot: 1},
		"slot 0 ignored":               {prio: [2]any{0, nil}, wantSlot: 1},
		"both ignored: nothing to try": {prio: [2]any{0, 0}, wantErr: ErrWrongPassphrase},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path, _ := formatFile(t, 4096, opts)
			rewriteMeta(t, path, func(m map[string]any) {
				for i, p := range tc.prio {
					if p != nil {
						obj(m, "keyslots", []string{"0", "1"}[i])["priority"] = p
					}
				}
			})
			_, h, err := Open(openFile(t, path), []byte("same"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tc.wantErr)
			}
			if err == nil && h.Keyslot != tc.wantSlot {
				t.Errorf("Open used keyslot %d, want %d", h.Keyslot, tc.wantSlot)
			}
		})
	}
}

// TestOpenEnforcesLimits: KDF costs above the limits are refused before any
// work is done (Open's limits are cryptsetup's; these are small stand-ins).
func TestOpenEnforcesLimits(t *testing.T) {
	roomy := limits{maxIterations: 1000, maxMemoryKiB: 1024, maxTime: 4, maxThreads: 1}
	pbkdf2Disk, _ := formatFile(t, 4096, Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("p"), KDF: PBKDF2Fast()}}})
	argonDisk, _ := formatFile(t, 4096, Options{Keyslots: []KeyslotSpec{{Passphrase: []byte("p"), KDF: testArgon2id()}}}) // t=4, 1024 KiB, 1 lane
	tests := map[string]struct {
		path string
		lim  func(*limits)
	}{
		"keyslot pbkdf2 iterations": {pbkdf2Disk, func(l *limits) { l.maxIterations = 999 }},
		"digest pbkdf2 iterations":  {argonDisk, func(l *limits) { l.maxIterations = 999 }},
		"argon2 memory":             {argonDisk, func(l *limits) { l.maxMemoryKiB = 1023 }},
		"argon2 time":               {argonDisk, func(l *limits) { l.maxTime = 3 }},
		"argon2 threads":            {argonDisk, func(l *limits) { l.maxThreads = 0 }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := openFile(t, tc.path)
			if _, _, err := openWith(f, []byte("p"), roomy); err != nil {
				t.Fatalf("within limits: %v", err)
			}
			lim := roomy
			tc.lim(&lim)
			if _, _, err := openWith(f, []byte("p"), lim); !errors.Is(err, ErrCorruptHeader) {
				t.Errorf("above limits: %v, want ErrCorruptHeader", err)
			}
		})
	}
}

func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		u, err := NewUUID(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !validUUID(u) || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) || seen[u] {
			t.Fatalf("NewUUID = %q: not a fresh canonical v4 UUID", u)
		}
		seen[u] = true
	}
	if _, err := NewUUID(bytes.NewReader(make([]byte, 15))); err == nil {
		t.Error("NewUUID with a short random source succeeded")
	}
}
