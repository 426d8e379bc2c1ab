package admincli

import (
	"errors"
	"fmt"

	"github.com/confidant-cvm/confidant/shared/keyfile"
)

// maxKeyFile bounds a key file (the API accepts at most 1024 bytes).
const maxKeyFile = 1024

// readKeyFile reads key material from a regular file that only its owner
// can access (keyfile.Read).
func readKeyFile(path string) ([]byte, error) {
	b, err := keyfile.Read(path, maxKeyFile)
	if errors.Is(err, keyfile.ErrTooLarge) {
		return nil, fmt.Errorf("key file %s is larger than %d bytes", path, maxKeyFile)
	}
	return b, err
}

// newKeyFileWriter prepares writing a returned key (keyfile.Writer): the
// temporary file (0600, same directory) exists before the request, so that
// a key is not created when it could not be written.
func newKeyFileWriter(path string) (*keyfile.Writer, error) {
	w, err := keyfile.NewWriter(path)
	switch {
	case errors.Is(err, keyfile.ErrExists):
		return nil, fmt.Errorf("--return-key-file %s exists: it is never replaced", path)
	case err != nil:
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	return w, nil
}
