package ext4

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not installed (e2fsprogs): %v", tool, err)
	}
	return p
}

// image makes a file of size bytes, its first fill bytes random (a fresh
// dm-crypt volume reads as noise), the rest sparse.
func image(t *testing.T, size, fill int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 1<<20)
	for off := int64(0); off < min(fill, size); off += int64(len(noise)) {
		rand.Read(noise)
		if _, err := f.WriteAt(noise[:min(int64(len(noise)), size-off)], off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func format(t *testing.T, path string, size int64, opts Options) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Format(f, size, opts); err != nil {
		t.Fatalf("Format: %v", err)
	}
}

// dumpField returns a "Name:   value" line's value from dumpe2fs -h.
func dumpField(t *testing.T, dump, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s*(.*?)\s*$`).FindStringSubmatch(dump)
	if m == nil {
		t.Fatalf("dumpe2fs has no %q:\n%s", name, dump)
	}
	return m[1]
}

// TestFormatMatchesMke2fs formats images of several sizes over noise and
// checks them with e2fsck (nothing to fix) and against what mkfs.ext4 makes
// with the same features and ratios: the same geometry and counts.
func TestFormatMatchesMke2fs(t *testing.T) {
	e2fsck, dumpe2fs, mke2fs := need(t, "e2fsck"), need(t, "dumpe2fs"), need(t, "mke2fs")
	const MiB = 1 << 20
	for name, tc := range map[string]struct{ size, fill int64 }{
		"one short group":            {size: 16 * MiB, fill: 16 * MiB},
		"1 MiB":                      {size: 1 * MiB, fill: 1 * MiB},
		"temp disk of the e2e tests": {size: 255 * MiB, fill: 255 * MiB},
		"tiny last group left out":   {size: 128*MiB + 100<<10, fill: 8 * MiB},
		"backups in groups 3 5 7 9":  {size: 1200 * MiB, fill: 4 * MiB},
		"28 groups, odd end":         {size: 3583*MiB + 12<<10, fill: 4 * MiB},
	} {
		t.Run(name, func(t *testing.T) {
			p := image(t, tc.size, tc.fill)
			format(t, p, tc.size, Options{Label: "confidant-temp", ReservedPercent: 5})
			if out, err := exec.Command(e2fsck, "-fn", p).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn: %v\n%s", err, out)
			}
			ours, err := exec.Command(dumpe2fs, "-h", p).CombinedOutput()
			if err != nil {
				t.Fatalf("dumpe2fs: %v\n%s", err, ours)
			}
			ref := filepath.Join(t.TempDir(), "ref.img")
			os.WriteFile(ref, nil, 0o600)
			os.Truncate(ref, tc.size)
			if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-i", "16384", "-m", "5",
				"-O", "^has_journal,^resize_inode,^flex_bg,^metadata_csum,uninit_bg,^64bit,^orphan_file,^metadata_csum_seed",
				"-E", "lazy_itable_init=1", "-L", "confidant-temp", ref).CombinedOutput(); err != nil {
				t.Fatalf("mke2fs: %v\n%s", err, out)
			}
			theirs, _ := exec.Command(dumpe2fs, "-h", ref).CombinedOutput()
			for _, f := range []string{"Filesystem features", "Filesystem flags", "Default mount options", "Filesystem state",
				"Inode count", "Block count", "Reserved block count", "Free blocks", "Free inodes", "Blocks per group",
				"Inodes per group", "Inode blocks per group", "Inode size", "Required extra isize", "Filesystem volume name",
				"Default directory hash", "Maximum mount count"} {
				if o, r := dumpField(t, string(ours), f), dumpField(t, string(theirs), f); o != r {
					t.Errorf("%s: ours %q, mke2fs's %q", f, o, r)
				}
			}
			ls, err := exec.Command("debugfs", "-R", "ls -l /", p).CombinedOutput()
			if err != nil || !strings.Contains(string(ls), "lost+found") {
				t.Errorf("debugfs ls /: %v\n%s", err, ls)
			}
		})
	}
}

// TestFormatWritesLittle: only the metadata mkfs.ext4 must write is
// written: the inode tables are left to the kernel.
func TestFormatWritesLittle(t *testing.T) {
	var w countingWriter
	if err := Format(&w, 1<<40, Options{}); err != nil { // 1 TiB
		t.Fatal(err)
	}
	// 8192 groups: 19 copies of the superblock and 64 descriptor blocks,
	// group 0's bitmaps, 1 inode table block, 5 directory blocks, the last
	// group's bitmap; no inode table beyond that.
	backups := 0
	for g := range uint64(8192) {
		if hasSuper(g) {
			backups++
		}
	}
	if want := int64(backups*(1+64)+2+1+5+1) * blockSize; backups != 19 || w.n != want {
		t.Errorf("formatting 1 TiB wrote %d bytes with %d superblock copies, want %d bytes and 19", w.n, backups, want)
	}
}

type countingWriter struct{ n int64 }

func (w *countingWriter) WriteAt(b []byte, _ int64) (int, error) {
	w.n += int64(len(b))
	return len(b), nil
}

// TestDescChecksumKnownAnswer checks the uninit_bg checksum against the
// group descriptors mkfs.ext4 wrote.
func TestDescChecksumKnownAnswer(t *testing.T) {
	mke2fs := need(t, "mke2fs")
	p := image(t, 300<<20, 0)
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^has_journal,^metadata_csum,uninit_bg,^64bit", p).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(p)
	uuid := b[1024+0x68 : 1024+0x78]
	n := 0
	for g := uint32(0); g < 3; g++ {
		d := b[4096+32*g : 4096+32*(g+1)]
		if want := binary.LittleEndian.Uint16(d[0x1E:]); descChecksum(uuid, g, d) != want {
			t.Errorf("group %d: checksum %#x, mke2fs wrote %#x", g, descChecksum(uuid, g, d), want)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no descriptors checked")
	}
}

func TestFormatDeterministic(t *testing.T) {
	opts := Options{Label: "x", UUID: bytes.Repeat([]byte{1}, 16), HashSeed: bytes.Repeat([]byte{2}, 16), Now: time.Unix(1700000000, 0)}
	a, b := image(t, 64<<20, 0), image(t, 64<<20, 0)
	format(t, a, 64<<20, opts)
	format(t, b, 64<<20, opts)
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(b)
	if !bytes.Equal(x, y) {
		t.Error("the same options made two filesystems")
	}
	if !bytes.Equal(x[1024+0x68:1024+0x78], opts.UUID) {
		t.Error("the UUID is not the one asked for")
	}
}

func TestFormatRefuses(t *testing.T) {
	var w countingWriter
	for name, tc := range map[string]struct {
		size int64
		opts Options
		want error
	}{
		"too small":       {size: 32 << 10, want: ErrTooSmall},
		"negative":        {size: -1, want: ErrTooSmall},
		"long label":      {size: 64 << 20, opts: Options{Label: strings.Repeat("l", 17)}},
		"inode per 1 KiB": {size: 64 << 20, opts: Options{BytesPerInode: 1024}},
		"short UUID":      {size: 64 << 20, opts: Options{UUID: []byte{1}}},
		"reserve 60%":     {size: 64 << 20, opts: Options{ReservedPercent: 60}},
	} {
		t.Run(name, func(t *testing.T) {
			err := Format(&w, tc.size, tc.opts)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Format = %v, want an error (%v)", err, tc.want)
			}
		})
	}
}
