// Package seal encrypts secrets at rest under a key-encryption key (KEK)
// that is kept in its own file, never in the store beside the secrets.
//
// A sealed blob is: version byte (1) | 12-byte nonce | AES-256-GCM
// ciphertext and tag. The caller's associated data (for example a key ID)
// binds the blob to its record, so a blob moved to another record does not
// open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the size of a KEK in bytes.
const KeySize = 32

const version = 1

// ErrOpen means a sealed blob did not open: wrong KEK, wrong associated
// data, or tampered bytes.
var ErrOpen = errors.New("sealed data did not open")

// Sealer seals and opens secrets under one KEK.
type Sealer struct {
	aead cipher.AEAD
	id   string
}

// New returns a Sealer for a 32-byte KEK.
func New(kek []byte) (*Sealer, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("creating sealer: KEK is %d bytes, want %d", len(kek), KeySize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("creating sealer: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating sealer: %w", err)
	}
	sum := sha256.Sum256(append([]byte("confidant kek id\x00"), kek...))
	return &Sealer{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// LoadOrCreate reads the KEK from path, or creates the file with a new
// random KEK (mode 0600, created exclusively) when it does not exist. The
// file holds the 32 raw bytes.
func LoadOrCreate(path string) (*Sealer, error) {
	kek, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kek = make([]byte, KeySize)
		if _, err := rand.Read(kek); err != nil {
			return nil, fmt.Errorf("creating KEK: %w", err)
		}
		if err := writeExclusive(path, kek); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("creating KEK %s: %w", path, err)
			}
			// Another process made it first: use theirs.
			if kek, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("reading KEK %s: %w", path, err)
			}
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading KEK %s: %w", path, err)
	}
	s, err := New(kek)
	if err != nil {
		return nil, fmt.Errorf("loading KEK %s: %w", path, err)
	}
	return s, nil
}

func writeExclusive(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kek-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link fails if path exists, so the KEK is never replaced.
	return os.Link(tmp.Name(), path)
}

// ID returns a short, non-secret identifier of the KEK (for logs).
func (s *Sealer) ID() string { return s.id }

// Seal encrypts plaintext, binding it to aad.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	out := append([]byte{version}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts a blob made by Seal with the same aad; anything else is
// ErrOpen.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, fmt.Errorf("opening sealed data: %w", ErrOpen)
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, fmt.Errorf("opening sealed data: %w", ErrOpen)
	}
	return pt, nil
}

// Equal reports whether two sealers use the same KEK.
func (s *Sealer) Equal(o *Sealer) bool { return s.id == o.id }
