// Package capped reads files whose size the reader bounds: a file larger
// than the bound is refused, never read whole into memory.
package capped

import (
	"fmt"
	"io"
	"os"
)

// Read reads r to the end, refusing more than limit bytes ("<name> is
// larger than <limit> bytes"). The result is never nil.
func Read(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// ReadFile reads the file path of at most limit bytes (Read).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, limit)
}
