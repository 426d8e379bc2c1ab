package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/confidant-cvm/confidant/hostd/internal/preflight"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// fakeImage writes a small kernel, initrd and firmware (not bootable) and
// returns a sim spec using them.
func fakeImage(t *testing.T, dir, name string) *spec.Spec {
	t.Helper()
	files := map[string][]byte{
		"kernel":   bytes.Repeat([]byte("K"), 10000),
		"initrd":   bytes.Repeat([]byte("I"), 5000),
		"bios.bin": bytes.Repeat([]byte{0x90}, 64<<10),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &spec.Spec{
		Name: name, TEE: spec.TEESim, VCPUs: 1, Memory: 256 << 20,
		Image:    spec.Image{Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd"), Cmdline: "console=ttyS0"},
		Verifier: "127.0.0.1:8443",
		Firmware: spec.Firmware{Kind: spec.FirmwareSeaBIOS, Path: filepath.Join(dir, "bios.bin")},
	}
}

func resolved(t *testing.T, s *spec.Spec) *spec.Spec {
	t.Helper()
	if err := s.Resolve(); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(spec.ValidateOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMeasurementCoversWhatIsBooted(t *testing.T) {
	dir := t.TempDir()
	base := resolved(t, fakeImage(t, dir, "m"))
	measure := func(s *spec.Spec) string {
		t.Helper()
		bf, err := prepareBoot(s, t.TempDir(), t.TempDir())
		if err != nil {
			t.Fatalf("prepareBoot: %v", err)
		}
		if bf.measurement == "" {
			t.Fatal("no measurement for a sim guest")
		}
		for src, dst := range map[string]string{s.Image.Kernel: bf.kernel, s.Image.Initrd: bf.initrd, s.Firmware.Path: bf.firmware} {
			a, _ := os.ReadFile(src)
			b, _ := os.ReadFile(dst)
			if !bytes.Equal(a, b) {
				t.Fatalf("boot copy %s differs from %s", dst, src)
			}
		}
		return bf.measurement
	}
	want := measure(base)
	if again := measure(base); again != want {
		t.Fatalf("measurement not deterministic: %s vs %s", again, want)
	}
	flip := func(path string) func(*spec.Spec) {
		return func(*spec.Spec) {
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		mut  func(*spec.Spec)
	}{
		{"one initrd byte", flip(filepath.Join(dir, "initrd"))},
		{"one kernel byte", flip(filepath.Join(dir, "kernel"))},
		{"one firmware byte", flip(filepath.Join(dir, "bios.bin"))},
		{"command line", func(s *spec.Spec) { s.Image.Cmdline += " init=/bin/sh" }},
		{"vcpus", func(s *spec.Spec) { s.VCPUs = 2 }},
	}
	seen := map[string]string{want: "base"}
	for _, tc := range tests {
		s := *base
		tc.mut(&s)
		got := measure(&s)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: measurement unchanged (same as %s)", tc.name, prev)
		}
		seen[got] = tc.name
	}
}

func TestTempDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "temp.img")
	if err := ensureTempDisk(path, 1<<30); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 1<<30 {
		t.Fatalf("size %d", st.Size())
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks > 8 {
		t.Errorf("temp disk is not sparse: %d blocks", blocks)
	}
	// Contents survive: ensureTempDisk never recreates an existing disk.
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte("ciphertext"), 4096)
	f.Close()
	if err := ensureTempDisk(path, 1<<30); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10)
	f, _ = os.Open(path)
	f.ReadAt(b, 4096)
	f.Close()
	if string(b) != "ciphertext" {
		t.Fatal("temp disk contents lost")
	}
}

func newTestManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = shortDir(t)
	}
	m, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background(), OnExitStop) })
	return m
}

func TestCreateGetListDelete(t *testing.T) {
	m := newTestManager(t, Options{})
	dir := t.TempDir()
	ctx := t.Context()
	if _, err := m.Create(ctx, fakeImage(t, dir, "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, fakeImage(t, dir, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, fakeImage(t, dir, "a")); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate Create error = %v, want ErrExists", err)
	}
	bad := fakeImage(t, dir, "Bad_Name")
	if _, err := m.Create(ctx, bad); !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("Create(bad name) error = %v, want spec.ErrInvalid", err)
	}
	list := m.List()
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("List() = %v", list)
	}
	g, err := m.Get("a")
	if err != nil || g.Status.State != StateStopped || !g.Status.Simulated || g.Spec.CPU != "max" {
		t.Fatalf("Get(a) = %+v, %v", g, err)
	}
	for name, op := range map[string]func() error{
		"get":    func() error { _, err := m.Get("zz"); return err },
		"start":  func() error { _, err := m.Start(ctx, "zz"); return err },
		"stop":   func() error { _, err := m.Stop(ctx, "zz", StopOptions{}); return err },
		"delete": func() error { return m.Delete(ctx, "zz") },
	} {
		if err := op(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown guest: err = %v, want ErrNotFound", name, err)
		}
	}
	if err := m.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// Specs and status are reloaded by a new manager.
	m2 := newTestManager(t, Options{StateDir: m.opts.StateDir})
	if g, err := m2.Get("b"); err != nil || g.Spec.Image.Cmdline != "console=ttyS0" {
		t.Fatalf("reloaded Get(b) = %+v, %v", g, err)
	}
	if _, err := m2.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted guest came back: %v", err)
	}
}

func TestHardwareGuestsNeedPreflight(t *testing.T) {
	dir := t.TempDir()
	ovmf := filepath.Join(dir, "OVMF.fd")
	os.WriteFile(ovmf, make([]byte, 4096), 0o644)
	snpSpec := func(name string) *spec.Spec {
		s := fakeImage(t, dir, name)
		s.TEE = spec.TEESNP
		s.Firmware = spec.Firmware{Kind: spec.FirmwareOVMF, Path: ovmf}
		return s
	}
	tests := map[string]struct {
		preflight PreflightFunc
		wantErr   error
	}{
		"no preflight configured": {preflight: nil},
		"host refuses": {
			preflight: func(context.Context, *spec.Spec) error {
				return fmt.Errorf("%w: no SNP", preflight.ErrIsolationUnavailable)
			},
			wantErr: preflight.ErrIsolationUnavailable,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := newTestManager(t, Options{Preflight: tc.preflight, QEMU: "/bin/false"})
			if _, err := m.Create(t.Context(), snpSpec("hw")); err != nil {
				t.Fatal(err)
			}
			_, err := m.Start(t.Context(), "hw")
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Start() error = %v, want %v", err, tc.wantErr)
			}
			g, _ := m.Get("hw")
			if g.Status.State != StateStopped || !strings.HasPrefix(g.Status.Reason, "refused: ") {
				t.Fatalf("after refusal: %+v", g.Status)
			}
		})
	}
}

func TestSimGuestNeedsSigner(t *testing.T) {
	m := newTestManager(t, Options{QEMU: "/bin/false"})
	if _, err := m.Create(t.Context(), fakeImage(t, t.TempDir(), "s")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(t.Context(), "s"); err == nil || !strings.Contains(err.Error(), "signer") {
		t.Fatalf("Start() without signer error = %v", err)
	}
}

func TestRecoverMarksDeadGuestFailed(t *testing.T) {
	m := newTestManager(t, Options{})
	if _, err := m.Create(t.Context(), fakeImage(t, t.TempDir(), "d")); err != nil {
		t.Fatal(err)
	}
	stateDir := m.opts.StateDir
	m.Close(t.Context(), OnExitLeave)
	// Pretend the guest was running under a process that is gone.
	st := Status{State: StateRunning, Simulated: true, PID: 1 << 22, PIDStart: 1}
	if err := writeJSON(filepath.Join(stateDir, "guests", "d", statusFile), st); err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t, Options{StateDir: stateDir})
	g, err := m2.Get("d")
	if err != nil {
		t.Fatal(err)
	}
	if g.Status.State != StateFailed || !strings.Contains(g.Status.Reason, "exited while hostd was not running") {
		t.Fatalf("recovered status = %+v", g.Status)
	}
	// A live process that is not that QEMU (PID reused) is not adopted.
	st = Status{State: StateRunning, Simulated: true, PID: os.Getpid(), PIDStart: 1}
	writeJSON(filepath.Join(stateDir, "guests", "d", statusFile), st)
	m2.Close(t.Context(), OnExitLeave)
	m3 := newTestManager(t, Options{StateDir: stateDir})
	if g, _ := m3.Get("d"); g.Status.State != StateFailed {
		t.Fatalf("a reused PID was adopted: %+v", g.Status)
	}
}
