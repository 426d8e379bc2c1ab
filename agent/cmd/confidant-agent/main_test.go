package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandOutsidePID1 runs the built binary as an ordinary process: it
// refuses to run the boot flow, --check-config validates a file, and the
// token and serve commands check their arguments before touching anything.
func TestCommandOutsidePID1(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "confidant-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, good, "verifier:\n  url: https://10.0.2.2:8443\nkey_name: os\nos_disk:\n  luks_uuid: 3f1c2b6a-1111-4222-8333-444455556666\n")
	writeFile(t, bad, "verifier:\n  url: http://10.0.2.2\ntee: sgx\nextra: 1\n")

	tests := map[string]struct {
		args     []string
		wantCode int
		wantOut  []string
	}{
		"not PID 1":    {wantCode: 2, wantOut: []string{"not PID 1"}},
		"valid config": {args: []string{"--check-config", good}, wantOut: []string{"is valid"}},
		"invalid config, every problem": {
			args: []string{"--check-config", bad}, wantCode: 1,
			wantOut: []string{"allow_plain_http", `tee "sgx"`, "field extra not found", "key_name", "luks_uuid is required"},
		},
		"command line narrows": {
			args:    []string{"--check-config", good, "--cmdline", "confidant.ip=10.0.2.15/24 confidant.allow_plain_http=1"},
			wantOut: []string{"is valid", "ignoring kernel command line key", "key=confidant.allow_plain_http"},
		},
		"token needs an audience": {
			args: []string{"token"}, wantCode: 2, wantOut: []string{"an audience is required"},
		},
		"token nonce checked": {
			args: []string{"token", "--audience", "rp", "--nonce", "a\x01b"}, wantCode: 2, wantOut: []string{"nonce: at most 256 bytes without control characters"},
		},
		"token unknown flag": {
			args: []string{"token", "--audience", "rp", "--bogus"}, wantCode: 2, wantOut: []string{"flag provided but not defined: -bogus"},
		},
		"token extra argument": {
			args: []string{"token", "--audience", "rp", "more"}, wantCode: 2, wantOut: []string{`unexpected argument "more"`},
		},
		"token without the boot's configuration": {
			args: []string{"token", "--audience", "rp", "--config", filepath.Join(dir, "none.yaml")}, wantCode: 1,
			wantOut: []string{"reading agent configuration", "none.yaml"},
		},
		"token without the CA": {
			// The CA defaults to verifier-ca.pem beside the configuration.
			args: []string{"token", "--audience", "rp", "--config", good}, wantCode: 1,
			wantOut: []string{"reading verifier CA", filepath.Join(dir, "verifier-ca.pem")},
		},
		"serve socket mode": {
			args: []string{"serve", "--socket-mode", "999"}, wantCode: 2, wantOut: []string{"--socket-mode in octal"},
		},
		"serve without the boot's configuration": {
			args: []string{"serve", "--config", filepath.Join(dir, "none.yaml"), "--socket", filepath.Join(dir, "s.sock")}, wantCode: 1,
			wantOut: []string{"reading agent configuration"},
		},
		"command line value checked": {
			args: []string{"--check-config", good, "--cmdline", "confidant.ip=10.0.2.15"}, wantCode: 1,
			wantOut: []string{"ADDRESS/PREFIXLEN"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
