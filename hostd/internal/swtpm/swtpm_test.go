package swtpm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "swt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestKey(t *testing.T) {
	dir := t.TempDir()
	tpm := TPM{StateDir: filepath.Join(dir, "state"), KeyFile: filepath.Join(dir, "keys", "k")}
	if err := tpm.EnsureKey(); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(tpm.KeyFile)
	if err := tpm.EnsureKey(); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(tpm.KeyFile)
	if !bytes.Equal(first, second) {
		t.Fatal("EnsureKey replaced an existing key")
	}
	tests := map[string]struct {
		content string
		mode    os.FileMode
	}{
		"world readable": {content: string(first), mode: 0o644},
		"short":          {content: "abcd\n", mode: 0o600},
		"not hex":        {content: strings.Repeat("zz", 32), mode: 0o600},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(tpm.KeyFile, []byte(tc.content), tc.mode)
			os.Chmod(tpm.KeyFile, tc.mode)
			if err := tpm.EnsureKey(); !errors.Is(err, ErrKey) {
				t.Fatalf("EnsureKey() = %v, want ErrKey", err)
			}
			if _, err := tpm.Start(t.Context(), Binaries{}); !errors.Is(err, ErrKey) {
				t.Fatalf("Start() = %v, want ErrKey", err)
			}
		})
	}
}

// TestManufactureAndRun manufactures a vTPM with the private CA, checks
// nothing leaks in clear into the state, runs swtpm and checks the state
// cannot be used without its key.
func TestManufactureAndRun(t *testing.T) {
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		t.Fatal("swtpm_setup not installed (scripts/install-deps.sh)")
	}
	dir := shortDir(t)
	ca, err := NewCA(filepath.Join(dir, "ca"), Binaries{})
	if err != nil {
		t.Fatal(err)
	}
	tpm := TPM{StateDir: filepath.Join(dir, "tpm"), KeyFile: filepath.Join(dir, "keys", "g.key")}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := tpm.Manufacture(ctx, ca, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("Manufacture: %v", err)
	}
	for _, f := range []string{"issuercert.pem", "signkey.pem"} {
		if _, err := os.Stat(filepath.Join(ca.Dir, f)); err != nil {
			t.Errorf("private CA has no %s: %v", f, err)
		}
	}
	state, err := os.ReadFile(filepath.Join(tpm.StateDir, "tpm2-00.permall"))
	if err != nil {
		t.Fatal(err)
	}
	// EK and platform certificates carry these strings; encrypted state
	// must not show them.
	for _, clear := range []string{"Confidant", "swtpm", "QEMU"} {
		if bytes.Contains(state, []byte(clear)) {
			t.Errorf("TPM state holds %q in clear: not encrypted", clear)
		}
	}
	if !strings.HasPrefix(tpm.KeyFile, dir+"/keys") || strings.HasPrefix(tpm.KeyFile, tpm.StateDir) {
		t.Fatal("key file inside the state directory")
	}
	// Manufacturing again keeps the state.
	if err := tpm.Manufacture(ctx, ca, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(tpm.StateDir, "tpm2-00.permall"))
	if !bytes.Equal(state, again) {
		t.Error("second Manufacture rewrote the state")
	}

	if _, err := exec.LookPath("swtpm_ioctl"); err != nil {
		t.Fatal("swtpm_ioctl not installed")
	}
	cmd, err := tpm.Start(ctx, Binaries{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st, err := os.Stat(tpm.Socket()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v mode %v", err, st.Mode().Perm())
	}
	// Positive control: with its key, the TPM initialises from the state.
	if out, err := exec.CommandContext(ctx, "swtpm_ioctl", "--unix", tpm.Socket(), "-i").CombinedOutput(); err != nil {
		t.Errorf("initialising the TPM with its key: %v: %s", err, out)
	}
	cmd.Process.Kill()
	cmd.Wait()

	// With another key, swtpm cannot decrypt the state and exits.
	other := TPM{StateDir: tpm.StateDir, KeyFile: filepath.Join(dir, "keys", "other.key")}
	if err := other.EnsureKey(); err != nil {
		t.Fatal(err)
	}
	if cmd, err := other.Start(ctx, Binaries{}); err == nil {
		// swtpm only reads the state at TPM init; ask it to init.
		out, ierr := exec.CommandContext(ctx, "swtpm_ioctl", "--unix", other.Socket(), "-i").CombinedOutput()
		cmd.Process.Kill()
		cmd.Wait()
		if ierr == nil {
			t.Fatalf("swtpm initialised the TPM with the wrong key: %s", out)
		}
	}
}
