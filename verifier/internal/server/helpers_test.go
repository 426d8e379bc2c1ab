//go:build cgo

package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/secretscan"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// The test binary has one guest: the TPM simulator is one per process.
// Tests in this package never call t.Parallel.
var (
	guest *testguest.Guest
	// strangerDir holds a second simulated signer whose root the
	// verifier does not trust.
	strangerDir string
	stranger    = sync.OnceValues(func() (*sim.Signer, error) { return sim.LoadOrCreate(strangerDir) })
	guestPCRs   map[int]string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "confidant-verifier-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strangerDir = filepath.Join(dir, "stranger")
	guest, err = testguest.New(filepath.Join(dir, "signer"))
	if err == nil {
		guestPCRs, err = guest.PCRs()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up the test guest:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	guest.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

const shippedPolicies = "../../../policies/appraisal"

// simDevPolicy is the shipped development policy for the simulated TEE.
func simDevPolicy(t testing.TB) string {
	return filepath.Join(shippedPolicies, "sim_development.rego")
}

// snpProductionOnSim writes the shipped SNP production policy rewritten to
// appraise sim-sev-snp evidence (kind, reference section and simulated
// flag), so that its rules run end to end against the simulated signer.
func snpProductionOnSim(t testing.TB, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shippedPolicies, "snp_production.rego"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.ReplaceAll(string(b), "sev-snp", "sim-sev-snp")
	src = strings.Replace(src, "package confidant.appraisal.snp_production", "package test.snp_production_on_sim", 1)
	src = strings.Replace(src, "not input.tee.simulated == false", "not input.tee.simulated == true", 1)
	p := filepath.Join(dir, "snp_production_on_sim.rego")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// reference returns reference values that affirm the test guest.
func reference() map[string]any {
	m := testguest.Measurement()
	return map[string]any{
		"version": 1,
		"sim-sev-snp": map[string]any{
			"measurements": map[string]any{hex.EncodeToString(m[:]): map[string]any{"name": "confidant-test-image"}},
			"pcrs": map[string]any{"sha256": map[string]any{
				"0": []string{guestPCRs[0]},
				"7": []string{guestPCRs[7]},
			}},
			"minimum_tcb": map[string]any{"bl": 4, "tee": 0, "snp": 22, "microcode": 213},
			"allow_smt":   true,
		},
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixtureOpts struct {
	policies  func(t testing.TB, dir string) []string // nil: sim development policy
	reference map[string]any                          // nil: reference()
	noSimRoot bool
	stateDir  string // shared with another fixture: a second replica
	config    func(*Config)
}

type fixture struct {
	t     testing.TB
	dir   string
	cfg   Config
	srv   *Server
	http  *httptest.Server
	clock *clock
	// logs is what the server logged; secrets are what must not appear
	// there or in the audit export (checked when the test ends).
	logs    *logBuffer
	secrets *secretscan.Scanner
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, clock: &clock{t: time.Now().UTC().Truncate(time.Second)},
		logs: &logBuffer{}, secrets: secretscan.New()}
	ref := o.reference
	if ref == nil {
		ref = reference()
	}
	refFile := filepath.Join(dir, "reference.json")
	writeJSONFile(t, refFile, ref)
	policies := []string{simDevPolicy(t)}
	if o.policies != nil {
		policies = o.policies(t, dir)
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	f.http = httptest.NewUnstartedServer(nil)
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.StateDir = stateDir
	cfg.Policies = policies
	cfg.ReferenceValues = refFile
	cfg.Issuer = "http://" + f.http.Listener.Addr().String()
	cfg.Audience = "test-audience"
	cfg.RateLimit = 0
	if !o.noSimRoot {
		cfg.SimRoot = filepath.Join(dir, "sim-root.pem")
		if err := os.WriteFile(cfg.SimRoot, guest.Signer.RootPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if o.config != nil {
		o.config(&cfg)
	}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(context.Background(), cfg, log, Options{Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg, f.srv = srv.cfg, srv
	f.http.Config.Handler = srv.Handler
	f.http.Start()
	t.Cleanup(func() {
		f.checkNoSecrets()
		f.http.Close()
		srv.Close()
	})
	return f
}

func writeJSONFile(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// String shortens the body for failure messages.
func (r response) String() string {
	b := string(r.body)
	if len(b) > 400 {
		b = b[:400] + "..."
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) errBody(t testing.TB) api.ErrorBody {
	t.Helper()
	var e api.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e
}

func (f *fixture) do(method, path string, body []byte) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.http.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b, header: resp.Header}
}

// nonce gets a fresh challenge nonce.
func (f *fixture) nonce() []byte {
	f.t.Helper()
	r := f.do(http.MethodPost, "/v1/challenge", nil)
	if r.status != http.StatusOK {
		f.t.Fatalf("challenge: %d %s", r.status, r.body)
	}
	var c api.ChallengeResponse
	if err := json.Unmarshal(r.body, &c); err != nil {
		f.t.Fatal(err)
	}
	n, err := base64.RawURLEncoding.DecodeString(c.Nonce)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// evidence makes a request body for nonce.
func evidenceFor(t testing.TB, nonce []byte, o testguest.Options) []byte {
	t.Helper()
	b, err := guest.EvidenceJSON(nonce, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) attest(body []byte, query string) response {
	f.t.Helper()
	return f.do(http.MethodPost, "/v1/attest"+query, body)
}

// token attests good evidence and returns the token.
func (f *fixture) token(o testguest.Options, query string) string {
	f.t.Helper()
	r := f.attest(evidenceFor(f.t, f.nonce(), o), query)
	if r.status != http.StatusOK {
		f.t.Fatalf("attest: %d %s", r.status, r.body)
	}
	var a api.AttestResponse
	if err := json.Unmarshal(r.body, &a); err != nil {
		f.t.Fatal(err)
	}
	return a.Token
}

// claims decodes a token's payload without checking it.
func claimsOf(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hasReason reports whether a reason contains substr, or one of its
// "|"-separated alternatives.
func hasReason(reasons []string, substr string) bool {
	for _, alt := range strings.Split(substr, "|") {
		for _, r := range reasons {
			if strings.Contains(r, alt) {
				return true
			}
		}
	}
	return false
}

// sqExec runs a statement on the fixture's SQLite file behind the store's
// back.
func sqExec(f *fixture, stmt string) error {
	db, err := sql.Open("sqlite", strings.TrimPrefix(f.cfg.Store, "sqlite:"))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(stmt)
	return err
}
