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
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating key file %s: %w", path, ErrKeyFileExists)
	}
	key := make([]byte, DiskKeySize)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, fmt.Errorf("generating disk key: %w", err)
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp") // mode 0600
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("creating key file: %w", err)
	}
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
		if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
			werr = fmt.Errorf("%s: %w", path, ErrKeyFileExists)
		} else {
			werr = err
		}
	}
	if werr == nil {
		werr = syncDir(dir)
	}
	if werr != nil {
		clear(key)
		return nil, fmt.Errorf("creating key file: %w", werr)
	}
	return key, nil
}
