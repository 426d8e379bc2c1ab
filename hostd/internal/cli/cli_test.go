package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/testboot"
)

func run(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, args, &out, &errb)
	return out.String(), errb.String(), code
}

var measRE = regexp.MustCompile(`SPINIT-REPORT n=1 measurement=([0-9a-f]{96})`)

// TestCLIEndToEnd runs the daemon in-process and drives a sim guest (from
// a spec naming an image manifest) through the CLI: create, list, show,
// start, console, stop --deallocate, delete.
func TestCLIEndToEnd(t *testing.T) {
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	stateDir := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "hostd.sock")
	t.Cleanup(func() {
		// Whatever happens, no QEMU or swtpm outlives the test.
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "guests", "*", "status.json"))
		for _, p := range dirs {
			var st guest.Status
			if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &st) == nil && st.PID > 0 {
				if p, err := os.FindProcess(st.PID); err == nil {
					_ = p.Kill()
				}
			}
		}
	})

	fix := testboot.Build(t, t.TempDir())
	img := filepath.Join(dir, "image")
	os.Mkdir(img, 0o755)
	for name, src := range map[string]string{"vmlinuz": fix.Kernel, "initrd.img": fix.Initrd} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(img, name), b, 0o644)
	}
	os.WriteFile(filepath.Join(img, "manifest.json"), []byte(`{"kernel":"vmlinuz","initrd":"initrd.img","cmdline":"console=ttyS0 panic=-1 quiet","os_disk":""}`), 0o644)
	specPath := filepath.Join(dir, "demo.yaml")
	os.WriteFile(specPath, []byte(`name: demo
tee: sim
vcpus: 1
memory: 256MiB
image:
  manifest: image/manifest.json
temp_disk_size: 32MiB
verifier: 127.0.0.1:9
vtpm: none
firmware:
  kind: seabios
`), 0o644)

	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
		served <- Serve(sctx, ServeConfig{StateDir: stateDir, Socket: sock, QEMU: "qemu-system-x86_64", OnExit: guest.OnExitStop, StopTimeout: 2 * time.Second}, log)
	}()
	defer func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("Serve did not return")
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon socket never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := "--socket=" + sock

	if out, errs, code := run(t, ctx, s, "vm", "create", "-f", specPath); code != 0 || !strings.Contains(out, "created demo (sim (SIMULATED))") {
		t.Fatalf("vm create: %d %q %q", code, out, errs)
	}
	if _, errs, code := run(t, ctx, s, "vm", "create", "-f", specPath); code == 0 || !strings.Contains(errs, "already exists") {
		t.Fatalf("second vm create: %d %q", code, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\ncolour: red\n"), 0o644)
	if _, errs, code := run(t, ctx, s, "vm", "create", "-f", bad); code == 0 || !strings.Contains(errs, "colour") {
		t.Fatalf("vm create with a bad spec: %d %q", code, errs)
	}
	if out, _, code := run(t, ctx, s, "vm", "list"); code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "SIMULATED") {
		t.Fatalf("vm list: %d %q", code, out)
	}
	out, _, code := run(t, ctx, s, "vm", "show", "demo", "--json")
	var g guest.Guest
	if code != 0 || json.Unmarshal([]byte(out), &g) != nil || g.Spec.Image.Kernel != filepath.Join(img, "vmlinuz") || g.Status.State != guest.StateStopped {
		t.Fatalf("vm show --json: %d %q", code, out)
	}
	if out, errs, code := run(t, ctx, s, "vm", "start", "demo"); code != 0 || !strings.Contains(out, "started demo") {
		t.Fatalf("vm start: %d %q %q", code, out, errs)
	}
	var console string
	for deadline := time.Now().Add(90 * time.Second); !measRE.MatchString(console); {
		if time.Now().After(deadline) {
			t.Fatalf("no report on the console:\n%s", console)
		}
		time.Sleep(200 * time.Millisecond)
		console, _, _ = run(t, ctx, s, "vm", "console", "demo")
	}
	out, _, _ = run(t, ctx, s, "vm", "show", "demo", "--json")
	json.Unmarshal([]byte(out), &g)
	if got := measRE.FindStringSubmatch(console)[1]; got != g.Status.Measurement {
		t.Errorf("console measurement %s, hostd's %s", got, g.Status.Measurement)
	}
	if !strings.Contains(console, "SIMULATED TEE") {
		t.Error("console does not label the guest simulated")
	}
	if out, _, code := run(t, ctx, s, "vm", "show", "demo"); code != 0 || !strings.Contains(out, "measurement:  "+g.Status.Measurement) {
		t.Errorf("vm show: %d %q", code, out)
	}
	if out, errs, code := run(t, ctx, s, "vm", "stop", "demo", "--deallocate"); code != 0 || !strings.Contains(out, "deallocated") {
		t.Fatalf("vm stop --deallocate: %d %q %q", code, out, errs)
	}
	if _, errs, code := run(t, ctx, s, "vm", "delete", "demo"); code != 0 {
		t.Fatalf("vm delete: %d %q", code, errs)
	}
	if _, errs, code := run(t, ctx, s, "vm", "show", "demo"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("vm show after delete: %d %q", code, errs)
	}
	if out, _, code := run(t, ctx, "sim-root", "--state-dir", stateDir); code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("sim-root: %d %q", code, out)
	}
}

func TestSanitizer(t *testing.T) {
	var buf bytes.Buffer
	w := &sanitizer{w: &buf}
	w.Write([]byte("ok\r\n\x1b]0;pwned\x07\x1b[2Jtab\there\n"))
	if got := buf.String(); got != "ok\n?]0;pwned??[2Jtab\there\n" {
		t.Fatalf("sanitized = %q", got)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRelayPrintsNothing: the relay's stdout and stderr are the guest's
// connection, so even its errors print nothing.
func TestRelayPrintsNothing(t *testing.T) {
	tests := map[string][]string{
		"bad address":  {"relay", "--to", "nowhere"},
		"no address":   {"relay"},
		"unknown flag": {"relay", "--to", "127.0.0.1:1", "--verbose"},
		"extra args":   {"relay", "--to", "127.0.0.1:1", "x"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := run(t, t.Context(), args...)
			if code == 0 {
				t.Errorf("exit code 0, want an error")
			}
			if out != "" || errOut != "" {
				t.Errorf("relay printed stdout %q stderr %q", out, errOut)
			}
		})
	}
	// Other commands still report their errors.
	if _, errOut, code := run(t, t.Context(), "vm", "--bogus"); code == 0 || errOut == "" {
		t.Errorf("vm --bogus: code %d, stderr %q", code, errOut)
	}
}
