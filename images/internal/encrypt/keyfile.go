package encrypt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/confidant-cvm/confidant/shared/keyfile"
)

// Key file outcomes callers branch on.
var (
	// ErrKeyFileExists means a new key was asked for but the key file is
	// already there: an existing key is never overwritten.
	ErrKeyFileExists = keyfile.ErrExists
	// ErrKeyFileMode means the key file is not a regular file, or group or
	// other users may access it.
	ErrKeyFileMode = keyfile.ErrMode
	// ErrKeyFileSize means the key file does not hold exactly DiskKeySize bytes.
	ErrKeyFileSize = errors.New("key file does not hold a 32-byte key")
)

// ReadKeyFile reads a disk key file: exactly DiskKeySize raw bytes in a
// regular file that neither group nor others may access (keyfile.Read).
// The caller zeroes the key once used.
func ReadKeyFile(path string) ([]byte, error) {
	key, err := keyfile.Read(path, DiskKeySize)
	n := len(key)
	if errors.Is(err, keyfile.ErrTooLarge) {
		n = DiskKeySize + 1
	} else if err != nil {
		return nil, err
	}
	if n != DiskKeySize {
		clear(key)
		size := fmt.Sprintf("%d bytes", n)
		if n > DiskKeySize {
			size = fmt.Sprintf("more than %d bytes", DiskKeySize)
		}
		return nil, fmt.Errorf("reading key file %s: %w: it holds %s (raw bytes, not hex or base64)", path, ErrKeyFileSize, size)
	}
	return key, nil
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

// KeyFileWriter writes a new key file in two steps (keyfile.Writer).
type KeyFileWriter = keyfile.Writer

// NewKeyFileWriter prepares writing the key file path, which must not
// exist (ErrKeyFileExists).
func NewKeyFileWriter(path string) (*KeyFileWriter, error) { return keyfile.NewWriter(path) }
