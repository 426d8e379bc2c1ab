package guest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/confidant-cvm/confidant/shared/testenv"
)

// TestStateDiskFull: hostd's state directory fills up. Creating a guest
// fails with an error that says so and leaves no half-made guest; the state
// of the guest already there is untouched; once space is free, the same
// manager creates the guest.
func TestStateDiskFull(t *testing.T) {
	state := testenv.Tmpfs(t, "1m")
	m := newTestManager(t, Options{StateDir: state})
	img := t.TempDir()
	ctx := t.Context()
	if _, err := m.Create(ctx, fakeImage(t, img, "a")); err != nil {
		t.Fatal(err)
	}
	aDir := m.guestDir("a")
	before := map[string][]byte{}
	for _, f := range []string{specFile, statusFile} {
		b, err := os.ReadFile(filepath.Join(aDir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}

	filler := filepath.Join(state, "filler")
	fill, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, werr := fill.Write(make([]byte, 4096)); werr == nil; _, werr = fill.Write(make([]byte, 4096)) {
	}
	fill.Close()

	_, err = m.Create(ctx, fakeImage(t, img, "b"))
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Create on a full disk: %v, want an error naming ENOSPC", err)
	}
	if _, serr := os.Stat(m.guestDir("b")); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a half-made guest directory is left: %v", serr)
	}
	if _, gerr := m.Get("b"); !errors.Is(gerr, ErrNotFound) {
		t.Fatalf("the failed guest is listed: %v", gerr)
	}
	for f, want := range before {
		if got, err := os.ReadFile(filepath.Join(aDir, f)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("guest a's %s changed on a full disk (%v)", f, err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, fakeImage(t, img, "b")); err != nil {
		t.Fatalf("Create after space was freed: %v", err)
	}
}
