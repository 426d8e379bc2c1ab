package guest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// TestCreateRefusesStateDirPaths: the daemon refuses a spec naming a file
// in its state directory, through a symlink too, naming the field.
func TestCreateRefusesStateDirPaths(t *testing.T) {
	m := newTestManager(t, Options{})
	if _, err := sim.LoadOrCreate(filepath.Join(m.opts.StateDir, "sim")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(m.opts.StateDir, "sim", sim.VCEKKeyFile), link); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		mut   func(*spec.Spec)
		field string
	}{
		"kernel":          {func(s *spec.Spec) { s.Image.Kernel = filepath.Join(m.opts.StateDir, "sim", sim.VCEKKeyFile) }, "image.kernel"},
		"initrd via link": {func(s *spec.Spec) { s.Image.Initrd = link }, "image.initrd"},
		"os disk":         {func(s *spec.Spec) { s.Image.OSDisk = link }, "image.os_disk"},
		"firmware":        {func(s *spec.Spec) { s.Firmware.Path = link }, "firmware.path"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := fakeImage(t, dir, "g")
			tc.mut(s)
			_, err := m.Create(t.Context(), s)
			if !errors.Is(err, spec.ErrStateDir) || !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), tc.field+": ") {
				t.Fatalf("Create() = %v, want ErrStateDir naming %s", err, tc.field)
			}
		})
	}
	if _, err := m.Create(t.Context(), fakeImage(t, dir, "g")); err != nil {
		t.Fatalf("a spec outside the state directory: %v", err)
	}
}

// TestStartRechecksSwappedSymlinks: a symlink that pointed outside the
// state directory when the guest was created and into it at start is
// caught at start, before QEMU runs and before a byte is copied.
func TestStartRechecksSwappedSymlinks(t *testing.T) {
	for _, field := range []string{"image.kernel", "image.os_disk"} {
		t.Run(field, func(t *testing.T) {
			m := newTestManager(t, Options{QEMU: "/bin/false"})
			signer, err := sim.LoadOrCreate(filepath.Join(m.opts.StateDir, "sim"))
			if err != nil {
				t.Fatal(err)
			}
			m.opts.Signer = signer
			dir := t.TempDir()
			s := fakeImage(t, dir, "g")
			s.VTPM = spec.VTPMNone
			disk := filepath.Join(dir, "os.img")
			if err := os.WriteFile(disk, make([]byte, 4096), 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "link")
			target := disk
			if field == "image.kernel" {
				target = s.Image.Kernel
				s.Image.Kernel = link
			}
			s.Image.OSDisk = link
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Create(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			secret := filepath.Join(m.opts.StateDir, "sim", sim.VCEKKeyFile)
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(secret, link); err != nil {
				t.Fatal(err)
			}
			_, err = m.Start(t.Context(), "g")
			if !errors.Is(err, spec.ErrStateDir) || !strings.Contains(err.Error(), field) {
				t.Fatalf("Start() = %v, want ErrStateDir naming %s", err, field)
			}
			key, _ := os.ReadFile(secret)
			for _, f := range []string{"kernel", "initrd", "firmware"} {
				b, _ := os.ReadFile(filepath.Join(m.guestDir("g"), "boot", f))
				if len(key) > 0 && bytes.Contains(b, key) {
					t.Fatalf("the signer's key was copied to boot/%s", f)
				}
			}
			if g, _ := m.Get("g"); g.Status.State != StateFailed {
				t.Fatalf("guest is %s after the refused start", g.Status.State)
			}
		})
	}
}
