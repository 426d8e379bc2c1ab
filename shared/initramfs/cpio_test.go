package initramfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriterErrors(t *testing.T) {
	tests := map[string]struct {
		run     func(w *Writer) error
		wantErr error
	}{
		"too long": {
			run: func(w *Writer) error {
				if err := w.WriteHeader(&Header{Name: "a", Mode: TypeReg, Size: 2}); err != nil {
					return err
				}
				_, err := w.Write([]byte("abc"))
				return err
			},
			wantErr: ErrWriteTooLong,
		},
		"short then header": {
			run: func(w *Writer) error {
				if err := w.WriteHeader(&Header{Name: "a", Mode: TypeReg, Size: 2}); err != nil {
					return err
				}
				return w.WriteHeader(&Header{Name: "b", Mode: TypeReg})
			},
			wantErr: ErrShortWrite,
		},
		"short then close": {
			run: func(w *Writer) error {
				if err := w.WriteHeader(&Header{Name: "a", Mode: TypeReg, Size: 2}); err != nil {
					return err
				}
				return w.Close()
			},
			wantErr: ErrShortWrite,
		},
		"empty name":   {run: func(w *Writer) error { return w.WriteHeader(&Header{Mode: TypeReg}) }, wantErr: ErrBadName},
		"NUL in name":  {run: func(w *Writer) error { return w.WriteHeader(&Header{Name: "a\x00b"}) }, wantErr: ErrBadName},
		"trailer name": {run: func(w *Writer) error { return w.WriteHeader(&Header{Name: trailerName}) }, wantErr: ErrBadName},
		"size > 4GiB": {
			run:     func(w *Writer) error { return w.WriteHeader(&Header{Name: "a", Size: 1 << 32}) },
			wantErr: ErrFieldRange,
		},
		"negative mtime": {
			run:     func(w *Writer) error { return w.WriteHeader(&Header{Name: "a", Mtime: -1}) },
			wantErr: ErrFieldRange,
		},
		"after close": {
			run: func(w *Writer) error {
				if err := w.Close(); err != nil {
					return err
				}
				return w.WriteHeader(&Header{Name: "a"})
			},
			wantErr: ErrClosed,
		},
		"write after close": {
			run: func(w *Writer) error {
				if err := w.Close(); err != nil {
					return err
				}
				_, err := w.Write(nil)
				return err
			},
			wantErr: ErrClosed,
		},
		"ok": {
			run: func(w *Writer) error {
				if err := w.WriteHeader(&Header{Name: "a", Mode: TypeReg | 0o644, Size: 3}); err != nil {
					return err
				}
				if _, err := w.Write([]byte("abc")); err != nil {
					return err
				}
				return w.Close()
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.run(NewWriter(&bytes.Buffer{}))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriterLayout(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	// Names of length 1..5 exercise every padding case of header+name and
	// of the data.
	want := map[string]string{}
	for i, name := range []string{"a", "bb", "ccc", "dddd", "eeeee"} {
		data := strings.Repeat("x", i)
		want[name] = data
		if err := w.WriteHeader(&Header{Name: name, Mode: TypeReg | 0o600, Size: int64(len(data)), Ino: uint32(i + 1), Nlink: 1, Mtime: 1700000000}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
	got := readNewc(t, buf.Bytes())
	if len(got) != len(want) {
		t.Fatalf("read %d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		if string(e.Data) != want[e.Name] || e.Mtime != 1700000000 || e.Mode != TypeReg|0o600 {
			t.Errorf("entry %v: data %q mtime %d", e, e.Data, e.Mtime)
		}
	}
}

// TestGNUCpioReadsArchive checks interoperability with GNU cpio: it lists
// every entry and extracts identical contents, modes and link targets.
func TestGNUCpioReadsArchive(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("GNU cpio is needed (apt-get install cpio): %v", err)
	}
	a := &Archive{Mtime: 1234567890}
	files := map[string]struct {
		data string
		perm os.FileMode
	}{
		"/init":                     {"#!static-elf\n", 0o755},
		"/etc/confidant/agent.yaml": {"verifier:\n  url: https://v\n", 0o644},
		"/etc/odd":                  {"12345", 0o600},
		"/empty":                    {"", 0o644},
		"/lib/modules/v/x.ko":       {strings.Repeat("\x7fELF\x00", 1000), 0o644},
	}
	for name, f := range files {
		if err := a.AddFile(name, []byte(f.data), f.perm); err != nil {
			t.Fatal(err)
		}
	}
	mustOK(t, a.AddDir("/tmp", 0o777|os.ModeSticky))
	mustOK(t, a.AddSymlink("/bin/sh", "busybox"))
	mustOK(t, a.AddCharDevice("/dev/console", 0o600, 5, 1))

	dir := t.TempDir()
	archive := filepath.Join(dir, "a.cpio")
	var buf bytes.Buffer
	mustOK(t, a.WriteCPIO(&buf))
	mustOK(t, os.WriteFile(archive, buf.Bytes(), 0o644))

	list := exec.Command(cpioBin, "-it", "--quiet", "-F", archive)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	gotNames := strings.Fields(string(out))
	wantNames := a.Paths()
	for i := range wantNames {
		wantNames[i] = strings.TrimPrefix(wantNames[i], "/")
	}
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("cpio -it lists\n%q\nwant\n%q", gotNames, wantNames)
	}

	root := filepath.Join(dir, "root")
	mustOK(t, os.Mkdir(root, 0o755))
	// Device nodes are left out: creating them needs privileges the test
	// must not depend on. Their headers are checked below.
	extract := exec.Command(cpioBin, "-idm", "--quiet", "--no-absolute-filenames", "-F", archive, "--nonmatching", "dev/console")
	extract.Dir = root
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	for name, f := range files {
		p := filepath.Join(root, name)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("extracted %s: %v", name, err)
			continue
		}
		if string(got) != f.data {
			t.Errorf("extracted %s differs: %d bytes, want %d", name, len(got), len(f.data))
		}
		fi, err := os.Stat(p)
		mustOK(t, err)
		if fi.Mode().Perm() != f.perm {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), f.perm)
		}
		if fi.ModTime().Unix() != 1234567890 {
			t.Errorf("%s mtime %d", name, fi.ModTime().Unix())
		}
	}
	if target, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("symlink bin/sh → %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi.Mode(), err)
	}
	con, ok := byName(readNewc(t, buf.Bytes()))["dev/console"]
	if !ok || con.Mode != TypeChar|0o600 || con.RdevMajor != 5 || con.RdevMinor != 1 {
		t.Errorf("dev/console header %+v", con.Header)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
