package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

const (
	golden   = "../offline/testdata/golden"
	recorded = "../offline/testdata"
	policies = "../../../policies"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut)
	root.SetArgs(args)
	root.SetOut(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func goldenNow(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(golden, "now.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestAppraise(t *testing.T) {
	args := []string{"appraise", "--evidence", golden + "/evidence.json", "--policy", policies + "/appraisal/sim_development.rego",
		"--reference", golden + "/reference.json", "--now", goldenNow(t)}
	out, err := run(t, append(args, "--sim-root", golden+"/sim-root.pem")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(out), &claims); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if claims["status"] != "affirming" || claims["hwmodel"] == nil {
		t.Fatalf("claims: %v", claims)
	}

	// Without --sim-root the simulated root is not trusted: every failed
	// check is printed and the exit status is 1.
	out, err = run(t, args...)
	var code exitcode.Code
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("err %v, want exit status 1", err)
	}
	var body struct {
		Error   string   `json:"error"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil || body.Error != "evidence_denied" || len(body.Reasons) == 0 {
		t.Fatalf("denial output: %s", out)
	}
}

func TestInspect(t *testing.T) {
	milan := []string{"inspect", "--snp", recorded + "/milan-report.bin", "--vcek", recorded + "/milan-vcek.der"}
	out, err := run(t, append(milan, "--now", "2024-06-01T00:00:00Z")...)
	if err != nil {
		t.Fatalf("recorded Milan report: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"verified": true`) || !strings.Contains(out, `"product": "Milan"`) {
		t.Fatalf("output: %s", out)
	}
	// After the VCEK expired it does not verify.
	out, err = run(t, append(milan, "--now", "2031-01-01T00:00:00Z")...)
	var code exitcode.Code
	if !errors.As(err, &code) || code != 1 || !strings.Contains(out, `"verified": false`) {
		t.Fatalf("expired: %v %s", err, out)
	}
	out, err = run(t, "inspect", "--tdx", recorded+"/tdx_prod_quote_SPR_E4.dat", "--now", "2023-07-01T01:00:00Z")
	if err != nil || !strings.Contains(out, `"verified": true`) || !strings.Contains(out, `"tcb_status": "unknown"`) {
		t.Fatalf("recorded TDX quote: %v %s", err, out)
	}
	// A simulated report with its certificate table, against its root.
	ev, err := os.ReadFile(golden + "/evidence.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err := evidence.Decode(ev)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "report.bin"), env.Report, 0o644)
	os.WriteFile(filepath.Join(dir, "certs.bin"), env.CertTable, 0o644)
	simArgs := []string{"inspect", "--snp", filepath.Join(dir, "report.bin"), "--certs", filepath.Join(dir, "certs.bin"), "--now", goldenNow(t)}
	out, err = run(t, append(simArgs, "--sim-root", golden+"/sim-root.pem")...)
	if err != nil || !strings.Contains(out, `"kind": "sim-sev-snp"`) || !strings.Contains(out, `"simulated": true`) {
		t.Fatalf("simulated report: %v %s", err, out)
	}
	// Against AMD's roots the simulated report does not verify.
	if out, err = run(t, simArgs...); !errors.As(err, &code) || !strings.Contains(out, `"verified": false`) {
		t.Fatalf("simulated report against AMD roots: %v %s", err, out)
	}
	for name, args := range map[string][]string{
		"neither":      {"inspect"},
		"both":         {"inspect", "--snp", "x", "--tdx", "y"},
		"vcek and tdx": {"inspect", "--tdx", "y", "--vcek", "x"},
		"bad now":      {"inspect", "--tdx", "y", "--now", "yesterday"},
	} {
		if _, err := run(t, args...); err == nil || errors.As(err, &code) {
			t.Errorf("%s: got %v, want a usage error", name, err)
		}
	}
}

func TestServeHelpAndRefusals(t *testing.T) {
	out, err := run(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--listen", "--store", "--state-dir", "--policy", "--reference-values", "--sim-root",
		"--tls-cert", "--tls-key", "--issuer", "--audience", "--insecure-plain-http-any-interface", "--config",
		"--admin-listen", "--admin-tls-cert", "--admin-tls-key", "--admin-client-ca", "--release-audience"} {
		if !strings.Contains(out, flag) {
			t.Errorf("serve --help lacks %s", flag)
		}
	}
	dir := t.TempDir()
	_, err = run(t, "serve", "--listen", "0.0.0.0:0", "--state-dir", dir,
		"--policy", policies+"/appraisal/sim_development.rego", "--reference-values", policies+"/reference-values.example.json")
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("plain HTTP on all interfaces: %v", err)
	}
	// Config file values are used; flags override them.
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("listen: 0.0.0.0:0\nsigning_alg: RS256\n"), 0o644)
	_, err = run(t, "serve", "--config", cfg, "--signing-alg", "ES384", "--state-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "loopback only") || strings.Contains(err.Error(), "RS256") || !strings.Contains(err.Error(), "no --policy") {
		t.Fatalf("config file: %v", err)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "keys", "list", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var before []map[string]any
	json.Unmarshal([]byte(out), &before)
	out, err = run(t, "keys", "rotate", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var after []map[string]any
	json.Unmarshal([]byte(out), &after)
	if len(before) != 1 || len(after) != 2 || after[1]["kid"] != before[0]["kid"] || after[1]["retired_at"] == nil {
		t.Fatalf("before %v, after %v", before, after)
	}
}

func TestAdminCommand(t *testing.T) {
	out, err := run(t, "admin", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"key", "policy", "reference", "audit", "--socket", "--json"} {
		if !strings.Contains(out, sub) {
			t.Errorf("admin --help lacks %s", sub)
		}
	}
	// Without a running verifier the socket is named in the error.
	dir := t.TempDir()
	if _, err := run(t, "admin", "key", "list", "--state-dir", dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "admin.sock")) {
		t.Fatalf("no server: %v", err)
	}
}

func TestParseKEK(t *testing.T) {
	want := bytes.Repeat([]byte{0xa5}, 32)
	for name, in := range map[string]string{
		"hex":          strings.Repeat("a5", 32),
		"base64":       "paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=",
		"base64 raw":   "paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU",
		"with newline": strings.Repeat("a5", 32) + "\n",
	} {
		if got, err := parseKEK(in); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "a5", strings.Repeat("a5", 31), strings.Repeat("zz", 32), "paWlpQ=="} {
		if _, err := parseKEK(bad); err == nil {
			t.Errorf("parseKEK(%q) accepted", bad)
		}
	}
}

// TestServeFlagsApply: the admission flags reach the server's Config, and
// flags not given leave the config file's values alone.
func TestServeFlagsApply(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	apply, _ := serveFlags(fs)
	if err := fs.Parse([]string{"--max-in-flight", "8", "--queue-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.MaxQueue = 123 // as from a config file
	apply(&cfg)
	if cfg.MaxInFlight != 8 || cfg.QueueTimeout != 5*time.Second || cfg.MaxQueue != 123 {
		t.Errorf("max_in_flight %d, queue_timeout %v, max_queue %d; want 8, 5s, 123", cfg.MaxInFlight, cfg.QueueTimeout, cfg.MaxQueue)
	}
}
