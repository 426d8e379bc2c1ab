package encrypt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Key file outcomes callers branch on.
var (
	// ErrKeyFileExists means a new key was asked for but the key file is
	// already there: an existing key is never overwritten.
	ErrKeyFileExists = errors.New("key file already exists")
	// ErrKeyFileMode means the key file is not a regular file, or group or
	// other users may access it.
	ErrKeyFileMode = errors.New("key file must be a regular file only its owner can access (chmod 600)")
	// ErrKeyFileSize means the key file does not hold exactly DiskKeySize bytes.
	ErrKeyFileSize = errors.New("key file does not hold a 32-byte key")
)

// ReadKeyFile reads a disk key file: exactly DiskKeySize raw bytes in a
// regular file that neither group nor others may access. A key file anyone
// else on the builder can read is refused, like ssh refuses such a private
// key. The caller zeroes the key once used.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspecting key file: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("reading key file %s (mode %v): %w", path, st.Mode(), ErrKeyFileMode)
	}
	key := make([]byte, DiskKeySize+1)
	n, err := io.ReadFull(f, key)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(key)
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if n != DiskKeySize {
		clear(key)
		size := fmt.Sprintf("%d bytes", n)
		if n > DiskKeySize {
			size = fmt.Sprintf("more than %d bytes", DiskKeySize)
		}
		return nil, fmt.Errorf("reading key file %s: %w: it holds %s (raw bytes, not hex or base64)", path, ErrKeyFileSize, size)
	}
	return key[:DiskKeySize], nil
}

// CreateKeyFile generates a DiskKeySize-byte key from rnd (nil:
// crypto/rand) and writes it to path with mode 0600. It never replaces an
// existing file (ErrKeyFileExists): the key is written to a temporary file in
// the same directory, synced, and linked into place, so path appears whole
// or not at all. The caller zeroes the returned key once used.
func CreateKeyFile(path string, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	w, err := NewKeyFileWriter(path)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	key := make([]byte, DiskKeySize)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, fmt.Errorf("generating disk key: %w", err)
	}
	if err := w.Commit(key); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// KeyFileWriter writes a new key file in two steps, so that a key made
// elsewhere (by the verifier) is asked for only once the file can be
// written: NewKeyFileWriter creates the temporary file (mode 0600) beside
// the key file, Commit writes the key and links it into place, never
// replacing a file. Abort, deferred, removes the temporary file.
type KeyFileWriter struct {
	path string
	tmp  *os.File
}

// NewKeyFileWriter prepares writing the key file path, which must not
// exist (ErrKeyFileExists).
func NewKeyFileWriter(path string) (*KeyFileWriter, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating key file %s: %w", path, ErrKeyFileExists)
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	return &KeyFileWriter{path: path, tmp: tmp}, nil
}

// Commit writes key, syncs it and links it into place as the key file.
func (w *KeyFileWriter) Commit(key []byte) error {
	if w.tmp == nil {
		return errors.New("creating key file: already committed or aborted")
	}
	tmp := w.tmp
	w.tmp = nil
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(key)
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		// link(2) fails with EEXIST instead of replacing, unlike rename(2).
		if err := os.Link(tmp.Name(), w.path); errors.Is(err, os.ErrExist) {
			werr = fmt.Errorf("%s: %w", w.path, ErrKeyFileExists)
		} else {
			werr = err
		}
	}
	if werr == nil {
		werr = syncDir(filepath.Dir(w.path))
	}
	if werr != nil {
		return fmt.Errorf("creating key file: %w", werr)
	}
	return nil
}

// Abort removes the temporary file unless the key was committed.
func (w *KeyFileWriter) Abort() {
	if w.tmp != nil {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
		w.tmp = nil
	}
}
