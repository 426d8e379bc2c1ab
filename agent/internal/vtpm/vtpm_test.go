package vtpm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpmrm0")
	start := time.Now()
	_, err := Open(context.Background(), path, 200*time.Millisecond)
	if !errors.Is(err, ErrNoTPM) {
		t.Fatalf("Open = %v, want ErrNoTPM", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the device", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("waited %v, want about 200ms", d)
	}
}

func TestOpenNotATPM(t *testing.T) {
	// A directory opens with an error other than ENOENT: no waiting, and
	// no ErrNoTPM.
	start := time.Now()
	_, err := Open(context.Background(), t.TempDir(), 5*time.Second)
	if err == nil || errors.Is(err, ErrNoTPM) {
		t.Fatalf("Open(directory) = %v, want an open error", err)
	}
	if time.Since(start) > time.Second {
		t.Error("waited for a path that exists")
	}
}
