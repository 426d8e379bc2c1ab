package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/loadgen"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

// verifier is a real verifier server on a loopback port, configured from
// the files init wrote.
type verifier struct {
	url string
	// adminSocket is the admin API's unix socket.
	adminSocket string
}

func startVerifier(t *testing.T, dir string, trustSim bool) *verifier {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.Listen = ln.Addr().String()
	cfg.StateDir = t.TempDir()
	cfg.Policies = []string{filepath.Join(dir, loadgen.PolicyFile)}
	cfg.ReferenceValues = filepath.Join(dir, loadgen.ReferenceFile)
	cfg.RateLimit = 0
	if trustSim {
		cfg.SimRoot = filepath.Join(dir, loadgen.RootFile)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, nil, server.Options{})
	if err != nil {
		ln.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("verifier: %v", err)
		}
		srv.Close()
	})
	v := &verifier{url: "http://" + cfg.Listen, adminSocket: filepath.Join(cfg.StateDir, server.DefaultAdminSocket)}
	// Serve opens the admin socket: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(v.adminSocket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the verifier's admin socket did not appear")
		}
	}
	return v
}

// run runs the command line and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := newRoot(&stdout, &stderr)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return stdout.String(), stderr.String(), err
}

func initDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lg")
	if _, stderr, err := run(t, "init", "--dir", dir); err != nil {
		t.Fatalf("init: %v\n%s", err, stderr)
	}
	return dir
}

func decodeReport(t *testing.T, stdout string) *loadgen.Report {
	t.Helper()
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout)
	}
	return &rep
}

func TestRunAgainstVerifier(t *testing.T) {
	dir := initDir(t)
	v := startVerifier(t, dir, true)
	tokenFile := filepath.Join(t.TempDir(), "token.jwt")
	stdout, stderr, err := run(t, "run", "--dir", dir, "--verifier", v.url,
		"--concurrency", "8", "--requests", "50", "--json", "--save-token", tokenFile, "--log-level", "warn",
		"--admin-socket", v.adminSocket)
	if err != nil {
		t.Fatalf("run: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Flows != 50 || rep.Successes != 50 || rep.Failures != 0 || len(rep.Errors) != 0 {
		t.Fatalf("flows %d, successes %d, failures %d, errors %v (%v); want 50 successes",
			rep.Flows, rep.Successes, rep.Failures, rep.Errors, rep.ErrorExamples)
	}
	for _, step := range loadgen.Steps() {
		if s := rep.Steps[step]; s == nil || s.Count != 50 || s.P50 <= 0 || s.Max < s.P99 || s.P99 < s.P90 || s.P90 < s.P50 {
			t.Errorf("step %s: %+v", step, s)
		}
	}
	if !rep.Release {
		t.Error("no release step with --admin-socket")
	}
	if rep.Flow.Count != 50 || rep.Throughput <= 0 {
		t.Errorf("flow %+v, throughput %v", rep.Flow, rep.Throughput)
	}
	// The verifier runs in this process: found by its port.
	if rep.RSS == nil || rep.RSS.PID != os.Getpid() || rep.RSS.Samples == 0 || rep.RSS.MaxBytes <= 0 || rep.RSS.Error != "" {
		t.Errorf("verifier RSS %+v, want samples of pid %d", rep.RSS, os.Getpid())
	}

	// The saved token verifies with an independent OIDC library against
	// the verifier's discovery document and JWKS.
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(raw))
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, v.url)
	if err != nil {
		t.Fatal(err)
	}
	rp := provider.Verifier(&oidc.Config{ClientID: server.DefaultAudience, SupportedSigningAlgs: []string{oidc.ES256}})
	idt, err := rp.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("saved token does not verify: %v", err)
	}
	var claims struct {
		Status  string `json:"status"`
		SWName  string `json:"swname"`
		HWModel string `json:"hwmodel"`
		Secboot bool   `json:"secboot"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Status != "affirming" || claims.SWName != loadgen.MeasurementName || !claims.Secboot ||
		!strings.HasPrefix(idt.Subject, "sim-sev-snp:") || !strings.Contains(claims.HWModel, "simulated") {
		t.Errorf("token sub %q, claims %+v", idt.Subject, claims)
	}
	// The check can fail: a token with another signature does not verify.
	parts := strings.Split(tok, ".")
	parts[2] = parts[2][:10] + flip(parts[2][10]) + parts[2][11:]
	if _, err := rp.Verify(ctx, strings.Join(parts, ".")); err == nil {
		t.Error("a token with a changed signature verified")
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestRunWithoutSimRootIsDenied(t *testing.T) {
	dir := initDir(t)
	v := startVerifier(t, dir, false)
	stdout, stderr, err := run(t, "run", "--dir", dir, "--verifier", v.url,
		"--concurrency", "4", "--requests", "12", "--json", "--log-level", "warn")
	var code exitcode.Code
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("run: %v, want exit status 1\nstderr: %s", err, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Successes != 0 || rep.Failures != 12 || rep.Errors["evidence_denied"] != 12 || len(rep.Errors) != 1 {
		t.Fatalf("successes %d, failures %d, errors %v; want 12 evidence_denied", rep.Successes, rep.Failures, rep.Errors)
	}
	if n := rep.Steps[loadgen.StepAttest].Errors["evidence_denied"]; n != 12 {
		t.Errorf("attest step errors %v", rep.Steps[loadgen.StepAttest].Errors)
	}
	if !strings.Contains(rep.ErrorExamples["evidence_denied"], "not trusted") {
		t.Errorf("example reason %q", rep.ErrorExamples["evidence_denied"])
	}
}

func TestRunTextOutput(t *testing.T) {
	dir := initDir(t)
	v := startVerifier(t, dir, true)
	stdout, stderr, err := run(t, "run", "--dir", dir, "--verifier", v.url,
		"--concurrency", "2", "--duration", "300ms", "--log-level", "warn", "--verifier-pid", strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, want := range []string{"throughput", "challenge", "evidence (generator)", "attest", "full flow", "p99", "verifier RSS (pid " + strconv.Itoa(os.Getpid()), "CPU: generator"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := initDir(t)
	tests := map[string]struct {
		args []string
		want string
	}{
		"init twice":         {[]string{"init", "--dir", dir}, "exists"},
		"no requests":        {[]string{"run", "--dir", dir}, "number of requests or a duration"},
		"both":               {[]string{"run", "--dir", dir, "--requests", "1", "--duration", "1s"}, "not both"},
		"zero concurrency":   {[]string{"run", "--dir", dir, "--requests", "1", "--concurrency", "0"}, "concurrency 0"},
		"unknown kind":       {[]string{"run", "--dir", dir, "--requests", "1", "--tee", "tdx"}, "TEE kind"},
		"no init":            {[]string{"run", "--dir", t.TempDir(), "--requests", "1"}, "run init first"},
		"bad verifier URL":   {[]string{"run", "--dir", dir, "--requests", "1", "--verifier", "ftp://x"}, "verifier URL"},
		"verifier not there": {[]string{"run", "--dir", dir, "--requests", "1", "--verifier", "http://127.0.0.1:1", "--json"}, "exit status 1"},
		"no admin socket":    {[]string{"run", "--dir", dir, "--requests", "1", "--admin-socket", "/nonexistent"}, "creating release key"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRunReleaseDenied: a key whose release policy the agents do not meet
// (the shipped default, hardware only) fails every flow at release.
func TestRunReleaseDenied(t *testing.T) {
	dir := initDir(t)
	v := startVerifier(t, dir, true)
	c, err := adminclient.NewClient(adminclient.ClientConfig{Socket: v.adminSocket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateKey(context.Background(), adminclient.CreateKeyRequest{Name: "hardware-only"}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "run", "--dir", dir, "--verifier", v.url,
		"--concurrency", "2", "--requests", "4", "--json", "--release-key", "hardware-only", "--log-level", "warn")
	var code exitcode.Code
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("run: %v, want exit status 1\nstderr: %s", err, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Successes != 0 || rep.Failures != 4 || rep.Errors[api.CodeReleaseDenied] != 4 || len(rep.Errors) != 1 ||
		rep.Steps[loadgen.StepRelease].Errors[api.CodeReleaseDenied] != 4 {
		t.Fatalf("successes %d, failures %d, errors %v (%v)", rep.Successes, rep.Failures, rep.Errors, rep.ErrorExamples)
	}
	if rep.Steps[loadgen.StepAttest].Count != 4 || len(rep.Steps[loadgen.StepAttest].Errors) != 0 {
		t.Errorf("attest step %+v", rep.Steps[loadgen.StepAttest])
	}
}
