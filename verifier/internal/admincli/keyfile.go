package admincli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxKeyFile bounds a key file (the API accepts at most 1024 bytes).
const maxKeyFile = 1024

// readKeyFile reads key material from a regular file that only its owner
// can read.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	if len(b) > maxKeyFile {
		clear(b)
		return nil, fmt.Errorf("key file %s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// keyFileWriter writes a returned key: the temporary file (0600, same
// directory) exists before the request, so that a key is not created when
// it could not be written; commit links it into place.
type keyFileWriter struct {
	path string
	tmp  *os.File
	done bool
}

func newKeyFileWriter(path string) (*keyFileWriter, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("--return-key-file %s exists: it is never replaced", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	return &keyFileWriter{path: path, tmp: tmp}, nil
}

func (w *keyFileWriter) commit(key []byte) error {
	if _, err := w.tmp.Write(key); err != nil {
		return err
	}
	if err := w.tmp.Sync(); err != nil {
		return err
	}
	if err := w.tmp.Close(); err != nil {
		return err
	}
	// A link, unlike a rename, never replaces a file that appeared since.
	if err := os.Link(w.tmp.Name(), w.path); err != nil {
		return err
	}
	w.done = true
	os.Remove(w.tmp.Name())
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// abort removes the temporary file unless the key was committed.
func (w *keyFileWriter) abort() {
	if w.done {
		return
	}
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}
