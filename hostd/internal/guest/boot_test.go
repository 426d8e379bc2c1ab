package guest

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/hostd/internal/testboot"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// shortDir returns a short temporary directory (unix socket paths are
// limited to 107 bytes, t.TempDir paths can be long).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var reportRE = regexp.MustCompile(`SPINIT-REPORT n=(\d+) measurement=([0-9a-f]{96}) report_data_ok=(\w+) policy=(0x[0-9a-f]+) cert_table_bytes=(\d+) tpm=(\S+) host_data=([0-9a-f]{64}) os_disk=(\S+)`)

// waitConsole waits until the console log has a line matching re after
// offset bytes, and returns the submatches and the new offset.
func waitConsole(t *testing.T, m *Manager, name string, offset int, re *regexp.Regexp, timeout time.Duration) ([]string, int) {
	t.Helper()
	path, err := m.ConsolePath(name)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if len(b) > offset {
			if loc := re.FindSubmatchIndex(b[offset:]); loc != nil {
				sub := re.FindStringSubmatch(string(b[offset:]))
				return sub, offset + loc[1]
			}
			if i := strings.Index(string(b[offset:]), "SPINIT-ERROR"); i >= 0 {
				t.Fatalf("guest reported an error:\n%s", b[offset:])
			}
		}
		if time.Now().After(deadline) {
			g, _ := m.Get(name)
			t.Fatalf("no console line matching %s within %s (guest %s: %s); console:\n%s", re, timeout, g.Status.State, g.Status.Reason, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitState(t *testing.T, m *Manager, name string, want State, timeout time.Duration) Guest {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g, err := m.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if g.Status.State == want {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s is %s (%s), want %s", name, g.Status.State, g.Status.Reason, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killAll makes sure no QEMU or swtpm of this test survives it.
func killAll(t *testing.T, stateDir string) {
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "guests", "*"))
		for _, d := range dirs {
			var st Status
			if readJSON(filepath.Join(d, statusFile), &st) == nil {
				kill(st.PID, st.PIDStart)
				kill(st.SwtpmPID, st.SwtpmPIDStart)
			}
		}
	})
}

func simSpec(fix testboot.Fixture, name, extraCmdline string) *spec.Spec {
	return &spec.Spec{
		Name:         name,
		TEE:          spec.TEESim,
		VCPUs:        1,
		Memory:       256 << 20,
		Image:        spec.Image{Kernel: fix.Kernel, Initrd: fix.Initrd, Cmdline: strings.TrimSpace("console=ttyS0 panic=-1 quiet " + extraCmdline)},
		TempDiskSize: 64 << 20,
		Verifier:     "127.0.0.1:9",
		Firmware:     spec.Firmware{Kind: spec.FirmwareSeaBIOS},
	}
}

// TestSimGuestReports boots a sim guest (cloud kernel + spinit initramfs)
// under TCG with swtpm, and checks the report it got over the virtio-serial
// port carries the measurement hostd computed; then it restarts the
// manager with the guest left running and checks re-attachment, death
// detection, stop with kill, deallocation and deletion.
func TestSimGuestReports(t *testing.T) {
	stateDir := shortDir(t)
	killAll(t, stateDir)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(stateDir, "guests", "*", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
	})
	fix := testboot.Build(t, t.TempDir())
	signer, err := sim.LoadOrCreate(filepath.Join(stateDir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	opts := Options{StateDir: stateDir, Signer: signer, StopTimeout: 2 * time.Second, Log: testLog(t)}
	m, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Close(context.Background(), OnExitStop) }()

	// Boot 1: report, then the guest powers itself off. Its OS disk comes
	// through a symlink, which hostd resolves and passes to QEMU as a
	// descriptor.
	disk := filepath.Join(t.TempDir(), "os.img")
	if err := os.WriteFile(disk, append([]byte("confidant-osdisk"), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	diskLink := filepath.Join(t.TempDir(), "os-link.img")
	if err := os.Symlink(disk, diskLink); err != nil {
		t.Fatal(err)
	}
	one := simSpec(fix, "one", "")
	one.Image.OSDisk = diskLink
	created, err := m.Create(ctx, one)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	g, err := m.Start(ctx, "one")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !g.Status.Simulated || g.Status.Measurement == "" || g.Status.State != StateRunning {
		t.Fatalf("started guest status = %+v", g.Status)
	}
	sub, _ := waitConsole(t, m, "one", 0, reportRE, 60*time.Second)
	if sub[2] != g.Status.Measurement {
		t.Errorf("guest saw measurement %s, hostd computed %s", sub[2], g.Status.Measurement)
	}
	if sub[3] != "true" {
		t.Errorf("report does not carry the requested REPORT_DATA")
	}
	if sub[4] != "0x30000" {
		t.Errorf("report policy = %s, want 0x30000", sub[4])
	}
	if sub[5] == "0" {
		t.Errorf("no certificate table with the report")
	}
	if !strings.HasPrefix(sub[6], "present") {
		t.Errorf("guest has no vTPM: %s", sub[6])
	}
	if sub[7] != created.Identity.HostData || strings.Trim(sub[7], "0") == "" {
		t.Errorf("report HOST_DATA = %s, want the guest's identity %s", sub[7], created.Identity.HostData)
	}
	if want := hex.EncodeToString([]byte("confidant-osdisk")); sub[8] != want {
		t.Errorf("guest's OS disk starts %s, want %s", sub[8], want)
	}
	t.Logf("guest report line: %s", sub[0])
	g = waitState(t, m, "one", StateStopped, 20*time.Second)
	if g.Status.Reason != "guest powered off" {
		t.Errorf("reason = %q, want guest powered off", g.Status.Reason)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "guests", "one", "temp.img")); err != nil {
		t.Errorf("temp disk missing after a guest power-off: %v", err)
	}
	console, _ := os.ReadFile(filepath.Join(stateDir, "guests", "one", "console.log"))
	if !strings.Contains(string(console), "SIMULATED TEE") {
		t.Errorf("console log does not label the guest simulated")
	}
	if err := m.Delete(ctx, "one"); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	// Boot 2: a guest that stays up, across a hostd restart.
	if _, err := m.Create(ctx, simSpec(fix, "two", "spinit.stay")); err != nil {
		t.Fatal(err)
	}
	g, err = m.Start(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	sub, off := waitConsole(t, m, "two", 0, reportRE, 60*time.Second)
	if g, _ := m.Get("two"); sub[7] != g.Identity.HostData || sub[7] == created.Identity.HostData {
		t.Errorf("guest two reports HOST_DATA %s, want its own %s (guest one had %s)", sub[7], g.Identity.HostData, created.Identity.HostData)
	}
	if sub[8] != "absent" {
		t.Errorf("guest two has an OS disk: %s", sub[8])
	}
	g, _ = m.Get("two") // the pid changes if the guest rebooted
	pid := g.Status.PID
	if err := m.Close(ctx, OnExitLeave); err != nil {
		t.Fatalf("Close(leave): %v", err)
	}
	if _, alive := procStart(pid); !alive {
		t.Fatal("QEMU did not survive Close(leave)")
	}
	m, err = New(ctx, opts)
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	g, err = m.Get("two")
	if err != nil {
		t.Fatalf("guest lost across restart: %v", err)
	}
	if g.Status.State != StateRunning || g.Status.PID != pid {
		t.Fatalf("after restart: state %s pid %d, want running pid %d", g.Status.State, g.Status.PID, pid)
	}
	if g.Spec.Name != "two" || g.Spec.Image.Kernel != fix.Kernel {
		t.Fatalf("spec not reloaded: %+v", g.Spec)
	}
	// The new manager serves the secure processor again, with the same
	// identity.
	if again, _ := waitConsole(t, m, "two", off, reportRE, 30*time.Second); again[7] != sub[7] {
		t.Errorf("HOST_DATA changed across a hostd restart: %s, then %s", sub[7], again[7])
	}
	// QEMU dies behind hostd's back: the guest is marked failed.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	g = waitState(t, m, "two", StateFailed, 20*time.Second)
	if !strings.Contains(g.Status.Reason, "exited unexpectedly") {
		t.Errorf("reason = %q, want it to say QEMU exited unexpectedly", g.Status.Reason)
	}

	// Boot 3: restart the failed guest; stop it (it ignores the power
	// button, so hostd kills it after the timeout); deallocate; delete.
	if _, err := m.Start(ctx, "two"); err != nil {
		t.Fatalf("restarting a failed guest: %v", err)
	}
	if _, err := m.Start(ctx, "two"); !errors.Is(err, ErrState) {
		t.Fatalf("starting a running guest: err = %v, want ErrState", err)
	}
	g, err = m.Stop(ctx, "two", StopOptions{Deallocate: true})
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if g.Status.State != StateStopped || !strings.Contains(g.Status.Reason, "killed") || g.Status.TempDiskPresent {
		t.Errorf("after stop --deallocate: %+v", g.Status)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "guests", "two", "temp.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp disk still there after deallocation: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "guests", "two", "tpm", "tpm2-00.permall")); err != nil {
		t.Errorf("vTPM state lost on deallocation: %v", err)
	}
	if err := m.Delete(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "guests", "two")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest directory left after delete: %v", err)
	}
	if _, err := os.Stat(m.tpmKeyFile("two")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vTPM key left after delete: %v", err)
	}
}
