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
