package vtpm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// It waited (a lower bound: no upper one, which load would break).
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("gave up after %v, want at least the 200ms wait", d)
	}
}

// TestOpenWaitsForDevice: a device node that appears during the wait is
// opened (here a plain file, which then fails as a TPM, not as missing).
func TestOpenWaitsForDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpmrm0")
	appeared := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		appeared <- os.WriteFile(path, nil, 0o600)
	}()
	_, err := Open(context.Background(), path, time.Minute)
	if werr := <-appeared; werr != nil {
		t.Fatal(werr)
	}
	if err == nil || errors.Is(err, ErrNoTPM) {
		t.Fatalf("Open = %v, want a TPM error from the file that appeared", err)
	}
}

func TestOpenNotATPM(t *testing.T) {
	// A directory opens with an error other than ENOENT: no waiting, and
	// no ErrNoTPM. The context is already cancelled, so an Open that
	// waited would end with ErrNoTPM.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, t.TempDir(), time.Hour)
	if err == nil || errors.Is(err, ErrNoTPM) || !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("Open(directory) = %v, want EISDIR at once", err)
	}
}
