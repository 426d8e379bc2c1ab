//go:build cgo

package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// The test binary has one guest: the TPM simulator is one per process.
var guest *testguest.Guest

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "confidant-attest-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guest, err = testguest.New(filepath.Join(dir, "signer"))
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

const audience = "test-audience"

// allowAll is a release policy that releases to any valid token: the
// tests here are about the transaction, not the policy.
const allowAll = "package test.allow_all\n\nresult := {\"allow\": true, \"reasons\": []}\n"

type fixture struct {
	svc   *attest.Service
	store store.Store
	chal  *challenge.Service
	rel   *release.Service
	cfg   attest.Config
}

// newFixture assembles the service from real parts: a SQLite store, the
// challenge service, the shipped development policy over the test guest's
// reference values, the token issuer and the release service.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "verifier.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek := make([]byte, 32)
	rand.Read(kek)
	sealer, err := seal.New(kek)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := token.NewKeys(ctx, token.KeysConfig{Store: st, Sealer: sealer, Alg: token.ES256, TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := token.NewIssuer(token.IssuerConfig{Keys: keys, Issuer: "https://verifier.test", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	chal, err := challenge.New(challenge.Config{Key: kek, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := release.New(ctx, release.Config{Store: st, Sealer: sealer, DefaultPolicy: []byte(allowAll)})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := attest.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg := attest.Config{Nonces: chal, Appraiser: appraiser(t, dir), Tokens: issuer, Release: rel, Audit: st,
		Metrics: metrics, ReleaseAudience: audience}
	svc, err := attest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: st, chal: chal, rel: rel, cfg: cfg}
}

// appraiser is the real appraiser, with the shipped development policy
// for the simulated TEE and reference values that affirm the test guest.
func appraiser(t *testing.T, dir string) *appraise.Appraiser {
	t.Helper()
	pcrs, err := guest.PCRs()
	if err != nil {
		t.Fatal(err)
	}
	m := testguest.Measurement()
	ref, _ := json.Marshal(map[string]any{
		"version": 1,
		"sim-sev-snp": map[string]any{
			"measurements": map[string]any{hex.EncodeToString(m[:]): map[string]any{"name": "confidant-test-image"}},
			"pcrs":         map[string]any{"sha256": map[string]any{"0": []string{pcrs[0]}, "7": []string{pcrs[7]}}},
			"minimum_tcb":  map[string]any{"bl": 4, "tee": 0, "snp": 22, "microcode": 213},
			"allow_smt":    true,
		},
	})
	refFile := filepath.Join(dir, "reference.json")
	if err := os.WriteFile(refFile, ref, 0o600); err != nil {
		t.Fatal(err)
	}
	holder, err := policy.NewHolder(context.Background(), policy.HolderConfig{
		PolicyFiles:   []string{"../../../policies/appraisal/sim_development.rego"},
		ReferenceFile: refFile,
		Options:       policy.Options{Reserved: func(name string) bool { return name != "swname" && token.Reserved(name) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := appraise.New(appraise.Config{Policies: holder, SimRoot: guest.Signer.RootCert()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// evidence is the test guest's evidence for a fresh nonce.
func (f *fixture) evidence(t *testing.T) []byte {
	t.Helper()
	n, err := f.chal.Issue()
	if err != nil {
		t.Fatal(err)
	}
	body, err := guest.EvidenceJSON(n.Value, testguest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// audit returns the audit log.
func (f *fixture) audit(t *testing.T) []store.AuditRecord {
	t.Helper()
	recs, err := f.store.AuditRecords(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func attempt(body []byte) attest.Evidence {
	return attest.Evidence{Body: body, Audience: []string{audience}, Remote: "10.0.0.1"}
}

// TestAttestTokenOnlyWithSpentNonceAndAuditRecord: a token comes with its
// audit record (naming the token) and spends the nonce; the same evidence
// again gets no token, is answered nonce_reused and is audited too.
func TestAttestTokenOnlyWithSpentNonceAndAuditRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	body := f.evidence(t)
	var cpuDone int
	a := attempt(body)
	a.Done = func() { cpuDone++ }
	tok, err := f.svc.Attest(ctx, a)
	if err != nil || tok == "" {
		t.Fatalf("Attest: %q, %v", tok, err)
	}
	if cpuDone != 1 {
		t.Errorf("Done called %d times, want 1", cpuDone)
	}
	recs := f.audit(t)
	if len(recs) != 1 || recs[0].Event != "attest" || recs[0].Outcome != token.Affirming || recs[0].TokenID == "" ||
		recs[0].Remote != "10.0.0.1" || recs[0].PolicyID == "" {
		t.Fatalf("audit log after a token: %+v", recs)
	}
	tok, err = f.svc.Attest(ctx, attempt(body))
	if !errors.Is(err, challenge.ErrReused) || tok != "" {
		t.Fatalf("replay: %q, %v; want no token, nonce reused", tok, err)
	}
	recs = f.audit(t)
	if len(recs) != 2 || recs[1].Outcome != wire.CodeNonceReused || recs[1].PolicyID != "" {
		t.Fatalf("audit log after a replay: %+v", recs)
	}
}

// TestAttestNoTokenWithoutAuditRecord: when the store cannot write the
// audit record (and spend the nonce), no token leaves.
func TestAttestNoTokenWithoutAuditRecord(t *testing.T) {
	f := newFixture(t)
	body := f.evidence(t)
	f.store.Close()
	tok, err := f.svc.Attest(context.Background(), attempt(body))
	if err == nil || tok != "" {
		t.Fatalf("Attest with the store closed: %q, %v; want no token", tok, err)
	}
}

// TestAttestMalformedSpendsNonce: a malformed envelope that names a
// genuine nonce spends it, and is audited with it; the well-formed
// evidence for that nonce then gets no token.
func TestAttestMalformedSpendsNonce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	body := f.evidence(t)
	malformed := append(bytes.TrimSuffix(bytes.TrimSpace(bytes.Clone(body)), []byte("}")), []byte(`,"unknown":1}`)...)
	if _, err := f.svc.Attest(ctx, attempt(malformed)); codeOf(err) != wire.CodeMalformed {
		t.Fatalf("malformed: %v", err)
	}
	if recs := f.audit(t); len(recs) != 1 || recs[0].Outcome != wire.CodeMalformed {
		t.Fatalf("audit log after a malformed attempt: %+v", recs)
	}
	if tok, err := f.svc.Attest(ctx, attempt(body)); !errors.Is(err, challenge.ErrReused) || tok != "" {
		t.Fatalf("evidence after its nonce was spent: %q, %v", tok, err)
	}
}

func codeOf(err error) string {
	_, body := fault.Classify(err)
	return body.Error
}

// TestReleaseOnlyWithAuditRecord: a valid token gets the key with its
// audit record; when the audit record cannot be written, no key leaves;
// an attempt refused before its token is read is audited as such.
func TestReleaseOnlyWithAuditRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.svc.Attest(ctx, attempt(f.evidence(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.rel.Create(ctx, "disk", nil, false); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Release(ctx, attest.KeyRequest{Name: "disk", Token: tok, Remote: "10.0.0.1"})
	if err != nil || len(res.JWE) == 0 || res.Version != 1 {
		t.Fatalf("Release: %+v, %v", res, err)
	}
	recs := f.audit(t)
	if last := recs[len(recs)-1]; last.Event != "release" || last.Outcome != attest.OutcomeGranted || last.KeyName != "disk" ||
		last.KeyVersion != 1 || last.TokenID == "" {
		t.Fatalf("audit record of a release: %+v", last)
	}

	// The same service, its audit log closed: the key stays.
	closed, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "closed.db"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	cfg := f.cfg
	cfg.Audit = closed
	svc, err := attest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := svc.Release(ctx, attest.KeyRequest{Name: "disk", Token: tok, Remote: "10.0.0.1"}); err == nil || res != nil {
		t.Fatalf("Release without an audit log: %+v, %v; want no key", res, err)
	}

	n := len(f.audit(t))
	err = f.svc.RefuseRelease(ctx, attest.KeyRequest{Name: "disk", Remote: "10.0.0.2"}, fault.ErrNoBearer)
	if !errors.Is(err, fault.ErrNoBearer) {
		t.Fatalf("RefuseRelease returned %v", err)
	}
	recs = f.audit(t)
	if len(recs) != n+1 || recs[n].Outcome != wire.CodeInvalidToken || recs[n].Remote != "10.0.0.2" {
		t.Fatalf("audit record of a refused release: %+v", recs[n:])
	}
}
