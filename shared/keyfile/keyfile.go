// Package keyfile reads and writes files of secret key material that only
// their owner may access: confidant-image's disk key files and the keys
// the verifier's admin commands import and hand out. It is the one
// implementation of those checks in the tree.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/shared/durable"
)

// Outcomes callers branch on.
var (
	// ErrExists means a new key file was asked for but the path is taken
	// (by any kind of file, a dangling symlink too): a key file is never
	// replaced.
	ErrExists = errors.New("key file already exists")
	// ErrMode means the key file is not a regular file, or group or other
	// users may access it.
	ErrMode = errors.New("key file must be a regular file only its owner can access (chmod 600)")
	// ErrTooLarge means the key file holds more bytes than the caller
	// allows.
	ErrTooLarge = errors.New("key file is too large")
)

// Read returns the contents of the key file path: a regular file that
// neither group nor others may access (ErrMode), of at most limit bytes
// (ErrTooLarge). A key file anyone else can read is refused, like ssh
// refuses such a private key. What was read is zeroed on any failure; the
// caller zeroes the key once used.
func Read(path string, limit int) ([]byte, error) {
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
		return nil, fmt.Errorf("reading key file %s (mode %v): %w", path, st.Mode(), ErrMode)
	}
	b := make([]byte, limit+1)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(b)
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if n > limit {
		clear(b)
		return nil, fmt.Errorf("reading key file %s: %w: it holds more than %d bytes", path, ErrTooLarge, limit)
	}
	return b[:n], nil
}

// Writer writes a new key file in two steps, so that a key made elsewhere
// (by the verifier) is asked for only once the file can be written:
// NewWriter creates the temporary file (mode 0600) beside the key file,
// Commit writes the key and links it into place, never replacing a file.
// Abort, deferred, removes the temporary file.
type Writer struct {
	path string
	tmp  *os.File
}

// NewWriter prepares writing the key file path, which must not exist
// (ErrExists).
func NewWriter(path string) (*Writer, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating key file %s: %w", path, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	// CreateTemp asks for 0600 less the umask; the key file is 0600.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	return &Writer{path: path, tmp: tmp}, nil
}

// Path is the key file's path.
func (w *Writer) Path() string { return w.path }

// Commit writes key, syncs it, links it into place as the key file (ErrExists
// if a file appeared there meanwhile) and syncs the directory. It can be
// called once.
func (w *Writer) Commit(key []byte) error {
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
			werr = fmt.Errorf("%s: %w", w.path, ErrExists)
		} else {
			werr = err
		}
	}
	if werr == nil {
		werr = durable.SyncDir(filepath.Dir(w.path))
	}
	if werr != nil {
		return fmt.Errorf("creating key file: %w", werr)
	}
	return nil
}

// Abort removes the temporary file unless the key was committed.
func (w *Writer) Abort() {
	if w.tmp != nil {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
		w.tmp = nil
	}
}
