package keyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := bytes.Repeat([]byte{7}, 16)
	tests := map[string]struct {
		path    string
		want    []byte
		wantErr error
	}{
		"owner only":       {path: write("ok", key, 0o600), want: key},
		"read only":        {path: write("ro", key, 0o400), want: key},
		"at the limit":     {path: write("limit", bytes.Repeat([]byte{1}, 32), 0o600), want: bytes.Repeat([]byte{1}, 32)},
		"empty":            {path: write("empty", nil, 0o600), want: []byte{}},
		"one over":         {path: write("over", bytes.Repeat([]byte{1}, 33), 0o600), wantErr: ErrTooLarge},
		"group readable":   {path: write("group", key, 0o640), wantErr: ErrMode},
		"world readable":   {path: write("world", key, 0o604), wantErr: ErrMode},
		"group writable":   {path: write("gw", key, 0o620), wantErr: ErrMode},
		"directory":        {path: dir, wantErr: ErrMode},
		"device (not reg)": {path: "/dev/zero", wantErr: ErrMode},
		"missing":          {path: filepath.Join(dir, "absent"), wantErr: os.ErrNotExist},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Read(tc.path, 32)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Fatalf("Read = %x, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("Read = %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

// TestWriterModeIgnoresUmask: the key file is 0600 whatever the umask
// lets CreateTemp make.
func TestWriterModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "k.key")
	w, err := NewWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if w.Path() != path {
		t.Errorf("Path = %s, want %s", w.Path(), path)
	}
	if err := w.Commit([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
}
