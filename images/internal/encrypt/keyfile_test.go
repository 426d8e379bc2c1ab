package encrypt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

func TestCreateKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.key")
	key, err := CreateKeyFile(path, nil)
	if err != nil {
		t.Fatalf("CreateKeyFile: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != DiskKeySize {
		t.Errorf("key file mode %v size %d, want 0600 and %d", st.Mode(), st.Size(), DiskKeySize)
	}
	got, err := ReadKeyFile(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadKeyFile = %x, %v; want the created key", got, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(ents))
	}

	// An existing key is never replaced.
	if _, err := CreateKeyFile(path, nil); !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("second CreateKeyFile: %v, want ErrKeyFileExists", err)
	}
	if again, _ := ReadKeyFile(path); !bytes.Equal(again, key) {
		t.Error("the key file changed")
	}
	// A dangling symlink counts as existing (it would be followed).
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(filepath.Join(dir, "absent"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateKeyFile(link, nil); !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("CreateKeyFile over a dangling symlink: %v, want ErrKeyFileExists", err)
	}
	// A failing random source leaves nothing behind.
	failing := filepath.Join(dir, "fail.key")
	if _, err := CreateKeyFile(failing, iotest.ErrReader(errors.New("no entropy"))); err == nil {
		t.Error("CreateKeyFile with a failing random source succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("directory holds %d entries after failures, want 2", len(ents))
	}
}

func TestReadKeyFileRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	key := bytes.Repeat([]byte{7}, DiskKeySize)
	tests := map[string]struct {
		path    string
		wantErr error
	}{
		"good":             {path: write("good", key, 0o600)},
		"owner read-only":  {path: write("ro", key, 0o400)},
		"group readable":   {path: write("group", key, 0o640), wantErr: ErrKeyFileMode},
		"world readable":   {path: write("world", key, 0o604), wantErr: ErrKeyFileMode},
		"short":            {path: write("short", key[:31], 0o600), wantErr: ErrKeyFileSize},
		"long":             {path: write("long", append(key, '\n'), 0o600), wantErr: ErrKeyFileSize},
		"hex":              {path: write("hex", bytes.Repeat([]byte("07"), DiskKeySize), 0o600), wantErr: ErrKeyFileSize},
		"empty":            {path: write("empty", nil, 0o600), wantErr: ErrKeyFileSize},
		"directory":        {path: dir, wantErr: ErrKeyFileMode},
		"missing":          {path: filepath.Join(dir, "absent"), wantErr: os.ErrNotExist},
		"device (not reg)": {path: "/dev/zero", wantErr: ErrKeyFileMode},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ReadKeyFile(tc.path)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadKeyFile = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(got, key) {
				t.Errorf("key = %x", got)
			}
		})
	}
}

// TestKeyFileWriter: the temporary file exists from the start (so an
// unwritable place fails before a key is made elsewhere), the key file
// appears only on Commit, with mode 0600, never over a file that appeared
// meanwhile; Abort leaves nothing.
func TestKeyFileWriter(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{9}, DiskKeySize)
	entries := func() int {
		ents, _ := os.ReadDir(dir)
		return len(ents)
	}

	path := filepath.Join(dir, "copy.key")
	w, err := NewKeyFileWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) || entries() != 1 {
		t.Fatalf("before Commit: %v, %d entries (want only the temporary file)", err, entries())
	}
	if err := w.Commit(key); err != nil {
		t.Fatal(err)
	}
	w.Abort() // after Commit: nothing to do
	if got, err := ReadKeyFile(path); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadKeyFile = %x, %v", got, err)
	}
	if entries() != 1 {
		t.Errorf("%d entries after Commit, want the key file only", entries())
	}
	if err := w.Commit(key); err == nil {
		t.Error("a second Commit succeeded")
	}

	tests := map[string]struct {
		path    string
		between func(path string)
		wantErr error
	}{
		"exists":            {path: path, wantErr: ErrKeyFileExists},
		"directory missing": {path: filepath.Join(dir, "absent", "k.key"), wantErr: os.ErrNotExist},
		"appeared meanwhile": {path: filepath.Join(dir, "race.key"), between: func(p string) {
			os.WriteFile(p, []byte("other"), 0o600)
		}, wantErr: ErrKeyFileExists},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w, err := NewKeyFileWriter(tc.path)
			if err == nil {
				defer w.Abort()
				tc.between(tc.path)
				err = w.Commit(key)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%v, want %v", err, tc.wantErr)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "race.key")); string(b) != "other" {
		t.Errorf("a file that appeared meanwhile was replaced: %q", b)
	}

	// Abort removes the temporary file.
	w, err = NewKeyFileWriter(filepath.Join(dir, "aborted.key"))
	if err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if entries() != 2 {
		t.Errorf("%d entries after Abort, want 2", entries())
	}
}
