//go:build cgo

package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tpm"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

func TestAttestIssuesToken(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var hostData [32]byte
	copy(hostData[:], "guest-42")
	tok := f.token(testguest.Options{HostData: hostData, Workload: []byte(`{"app":"db"}`)}, "?audience=disk-key")

	iss, err := token.NewIssuer(token.IssuerConfig{Keys: f.srv.Keys, Issuer: f.cfg.Issuer, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Verify(context.Background(), tok, "disk-key")
	if err != nil {
		t.Fatalf("verifying the issued token: %v", err)
	}
	m := testguest.Measurement()
	wantSub := "sim-sev-snp:" + hex.EncodeToString(m[:]) + ":" + hex.EncodeToString(hostData[:])
	for name, want := range map[string]any{
		"sub":         wantSub,
		"aud":         "disk-key",
		"status":      "affirming",
		"hwmodel":     appraise.SimHWModel + " (Milan)",
		"swname":      "confidant-test-image",
		"secboot":     true,
		"dbgstat":     float64(token.DbgDisabledPermanently),
		"eat_profile": token.EATProfile,
		"development": true,
	} {
		if c[name] != want {
			t.Errorf("claim %s = %v, want %v", name, c[name], want)
		}
	}
	tee := c["tee"].(map[string]any)
	if tee["measurement"] != hex.EncodeToString(m[:]) || tee["kind"] != "sim-sev-snp" || tee["simulated"] != true {
		t.Errorf("tee claim: %v", tee)
	}
	pcrs := c["tpm"].(map[string]any)["pcrs"].(map[string]any)["sha256"].(map[string]any)
	if pcrs["7"] != guestPCRs[7] {
		t.Errorf("tpm.pcrs.sha256.7 = %v, want %s", pcrs["7"], guestPCRs[7])
	}
	rt := c["runtime"].(map[string]any)
	if rt["data"].(map[string]any)["app"] != "db" || len(rt["keys"].(map[string]any)["keys"].([]any)) != 1 {
		t.Errorf("runtime claim: %v", rt)
	}
	pol := c["policy"].(map[string]any)
	src, _ := os.ReadFile(simDevPolicy(t))
	if pol["id"] != "confidant.appraisal.sim_development" || pol["sha256"] != sha256hex(src) {
		t.Errorf("policy claim: %v", pol)
	}

	recs, err := f.srv.Store.AuditRecords(context.Background(), 0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records: %v, %v", recs, err)
	}
	if r := recs[0]; r.Outcome != "affirming" || r.Subject != wantSub || r.TokenID != c["jti"] || r.TEE != "sim-sev-snp" {
		t.Errorf("audit record: %+v", r)
	}
	// The default audience applies when the request names none.
	if aud := claimsOf(t, f.token(testguest.Options{}, ""))["aud"]; aud != "test-audience" {
		t.Errorf("default aud = %v", aud)
	}
}

// TestChecklist has one case per item of the verifier checklist in
// DESIGN.md that evidence can violate; each must be denied with its reason.
func TestChecklist(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	other := sha256.Sum256([]byte("other runtime data"))
	resign := func(edit func(r []byte)) func([]byte) ([]byte, error) {
		return func(r []byte) ([]byte, error) {
			edit(r)
			return guest.Signer.Resign(r)
		}
	}
	otherAK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := map[string]struct {
		opts       testguest.Options
		wantReason []string // substrings, each in some reason
		wantIs     error    // a sentinel the reasons come from (documentation)
	}{
		"REPORT_DATA is not SHA-512 of the runtime data": {
			opts:       testguest.Options{ReportData: func([]byte) [64]byte { return [64]byte{1} }},
			wantReason: []string{appraise.ErrBinding.Error()},
		},
		"report signature": {
			opts:       testguest.Options{Report: func(r []byte) ([]byte, error) { r[0x90] ^= 1; return r, nil }},
			wantReason: []string{snp.ErrSignature.Error()},
		},
		"hardware kind with a simulated report (chain to AMD roots)": {
			opts:       testguest.Options{Kind: evidence.KindSNP},
			wantReason: []string{snp.ErrChain.Error()},
		},
		"hardware kind without vTPM evidence": {
			opts:       testguest.Options{Kind: evidence.KindSNP, NoTPM: true},
			wantReason: []string{snp.ErrChain.Error(), appraise.ErrTPMRequired.Error()},
		},
		"reported TCB is not the VCEK's TCB": {
			opts:       testguest.Options{Report: resign(func(r []byte) { r[0x180] = 1 })},
			wantReason: []string{snp.ErrTCBMismatch.Error()},
		},
		"report version": {
			opts:       testguest.Options{Report: resign(func(r []byte) { binary.LittleEndian.PutUint32(r, 1) })},
			wantReason: []string{snp.ErrReportVersion.Error()},
		},
		"debug policy bit": {
			opts:       testguest.Options{Policy: sim.DefaultPolicy | 1<<19},
			wantReason: []string{"guest policy allows debugging"},
		},
		"migration agent policy bit": {
			opts:       testguest.Options{Policy: sim.DefaultPolicy | 1<<18},
			wantReason: []string{"guest policy allows a migration agent"},
		},
		"VMPL": {
			opts:       testguest.Options{VMPL: 1},
			wantReason: []string{"report VMPL is 1, want 0"},
		},
		"measurement not in the reference values": {
			opts:       testguest.Options{Measurement: [48]byte{9}},
			wantReason: []string{"measurement 09000000"},
		},
		"no vTPM evidence": {
			opts:       testguest.Options{NoTPM: true},
			wantReason: []string{appraise.ErrTPMRequired.Error()},
		},
		"quote not signed by the runtime data's AK": {
			opts:       testguest.Options{AK: &otherAK.PublicKey},
			wantReason: []string{tpm.ErrAKMismatch.Error()},
		},
		"quote extraData": {
			opts:       testguest.Options{ExtraData: func([]byte) []byte { return other[:] }},
			wantReason: []string{tpm.ErrNonce.Error()},
		},
		"PCR values do not match the quoted digest": {
			opts: testguest.Options{TPM: func(a *pb.Attestation) {
				for _, q := range a.GetQuotes() {
					q.GetPcrs().GetPcrs()[7][0] ^= 1
				}
			}},
			// shared/tpm reports this as ErrPCRDigest, or as ErrSignature
			// when go-tpm-tools' own digest check catches it first.
			wantReason: []string{tpm.ErrPCRDigest.Error() + "|PCRs digest not matching"},
		},
		"event log does not replay": {
			opts:       testguest.Options{EventLog: testguest.TamperedEventLog()},
			wantReason: []string{tpm.ErrEventLog.Error()},
		},
		"malformed event log": {
			opts:       testguest.Options{EventLog: []byte("\x00\x01garbage, not a TCG log")},
			wantReason: []string{tpm.ErrEventLog.Error()},
		},
		"every failed check is listed": {
			opts: testguest.Options{
				ReportData: func([]byte) [64]byte { return [64]byte{1} },
				ExtraData:  func([]byte) []byte { return other[:] },
			},
			wantReason: []string{appraise.ErrBinding.Error(), tpm.ErrNonce.Error()},
		},
		"every policy failure is listed": {
			opts:       testguest.Options{Policy: sim.DefaultPolicy | 1<<19 | 1<<18, VMPL: 2, Measurement: [48]byte{9}},
			wantReason: []string{"debugging", "migration agent", "VMPL is 2", "measurement 09000000"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := f.attest(evidenceFor(t, f.nonce(), tt.opts), "")
			if r.status != http.StatusForbidden {
				t.Fatalf("want 403, got %v", r)
			}
			e := r.errBody(t)
			if e.Error != api.CodeDenied {
				t.Fatalf("code %q, want %q", e.Error, api.CodeDenied)
			}
			for _, want := range tt.wantReason {
				if !hasReason(e.Reasons, want) {
					t.Errorf("reasons %q lack %q", e.Reasons, want)
				}
			}
		})
	}
	// Denials are audited.
	recs, err := f.srv.Store.AuditRecords(context.Background(), 0, 100)
	if err != nil || len(recs) != len(tests) {
		t.Fatalf("%d audit records (%v), want %d", len(recs), err, len(tests))
	}
	for _, r := range recs {
		if r.Outcome != api.CodeDenied || len(r.Reasons) == 0 {
			t.Errorf("audit record %+v", r)
		}
	}
}

func TestUntrustedSimulatedRoot(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	s, err := stranger()
	if err != nil {
		t.Fatal(err)
	}
	// A report signed by another simulated chain, with a valid binding.
	r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{Report: func(rep []byte) ([]byte, error) {
		return s.Resign(rep)
	}}), "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, snp.ErrSignature.Error()) {
		t.Fatalf("other simulated signer: %d %s", r.status, r.body)
	}
	// And its own certificate table too.
	env, err := guest.Evidence(f.nonce(), testguest.Options{Report: func(rep []byte) ([]byte, error) { return s.Resign(rep) }})
	if err != nil {
		t.Fatal(err)
	}
	env.CertTable = s.CertTable()
	body, _ := env.Encode()
	r = f.attest(body, "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, snp.ErrChain.Error()) {
		t.Fatalf("other simulated chain: %d %s", r.status, r.body)
	}
}

func TestSimulationNotTrustedWithoutFlag(t *testing.T) {
	f := newFixture(t, fixtureOpts{noSimRoot: true})
	r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{}), "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, "simulated TEE evidence is not trusted") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestProductionPolicyRules runs the shipped SNP production policy (kind
// swapped to the simulation) end to end.
func TestProductionPolicyRules(t *testing.T) {
	prod := func(t testing.TB, dir string) []string { return []string{snpProductionOnSim(t, dir)} }
	tests := map[string]struct {
		edit       func(ref map[string]any)
		opts       testguest.Options
		wantStatus int
		wantReason []string
	}{
		"affirmed": {wantStatus: http.StatusOK},
		"TCB below the minimum": {
			edit:       func(ref map[string]any) { simRef(ref)["minimum_tcb"].(map[string]any)["snp"] = 23 },
			wantStatus: http.StatusForbidden, wantReason: []string{"reported TCB snp=22 is below the minimum 23"},
		},
		"SMT without allow_smt": {
			edit:       func(ref map[string]any) { delete(simRef(ref), "allow_smt") },
			wantStatus: http.StatusForbidden, wantReason: []string{"SMT is allowed"},
		},
		"no reference value for a PCR measurement": {
			edit:       func(ref map[string]any) { delete(simRef(ref), "pcrs") },
			wantStatus: http.StatusForbidden, wantReason: []string{"no reference value for sim-sev-snp.pcrs"},
		},
		"no reference value for the launch measurement": {
			edit:       func(ref map[string]any) { delete(simRef(ref), "measurements") },
			wantStatus: http.StatusForbidden, wantReason: []string{"no reference value for sim-sev-snp.measurements"},
		},
		"no reference value for the minimum TCB": {
			edit:       func(ref map[string]any) { delete(simRef(ref), "minimum_tcb") },
			wantStatus: http.StatusForbidden, wantReason: []string{"no reference value for sim-sev-snp.minimum_tcb"},
		},
		"every measurement mismatch is reported": {
			edit: func(ref map[string]any) {
				simRef(ref)["pcrs"] = map[string]any{"sha256": map[string]any{"0": []string{"00"}, "7": []string{"00"}}}
			},
			opts:       testguest.Options{Measurement: [48]byte{9}},
			wantStatus: http.StatusForbidden,
			wantReason: []string{"measurement 0900", "PCR sha256[0]", "PCR sha256[7]"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ref := reference()
			if tt.edit != nil {
				tt.edit(ref)
			}
			f := newFixture(t, fixtureOpts{policies: prod, reference: ref})
			r := f.attest(evidenceFor(t, f.nonce(), tt.opts), "")
			if r.status != tt.wantStatus {
				t.Fatalf("want %d, got %v", tt.wantStatus, r)
			}
			if tt.wantStatus != http.StatusOK {
				reasons := r.errBody(t).Reasons
				for _, want := range tt.wantReason {
					if !hasReason(reasons, want) {
						t.Errorf("reasons %q lack %q", reasons, want)
					}
				}
			}
		})
	}
}

func simRef(ref map[string]any) map[string]any { return ref["sim-sev-snp"].(map[string]any) }

func TestNoReferenceValueDenies(t *testing.T) {
	ref := reference()
	delete(simRef(ref), "measurements")
	f := newFixture(t, fixtureOpts{reference: ref})
	r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{}), "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, "no reference value for sim-sev-snp.measurements") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestNoPolicyForKind(t *testing.T) {
	f := newFixture(t, fixtureOpts{policies: func(testing.TB, string) []string {
		return []string{shippedPolicies + "/tdx_production.rego"}
	}})
	r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{}), "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, "no appraisal policy") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestTDXRecordedQuoteIsNotBound(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	quote, err := os.ReadFile("testdata/tdx_prod_quote_SPR_E4.dat")
	if err != nil {
		t.Fatal(err)
	}
	env, err := guest.Evidence(f.nonce(), testguest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env.TEE, env.Report, env.CertTable = evidence.KindTDX, quote, nil
	body, _ := env.Encode()
	r := f.attest(body, "")
	if r.status != http.StatusForbidden || !hasReason(r.errBody(t).Reasons, appraise.ErrBinding.Error()) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestFreshness(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	t.Run("unknown nonce", func(t *testing.T) {
		n := make([]byte, 64)
		rand.Read(n)
		r := f.attest(evidenceFor(t, n, testguest.Options{}), "")
		if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceUnknown {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("nonce of another verifier", func(t *testing.T) {
		other := newFixture(t, fixtureOpts{})
		r := f.attest(evidenceFor(t, other.nonce(), testguest.Options{}), "")
		if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceUnknown {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("expired nonce", func(t *testing.T) {
		n := f.nonce()
		f.clock.advance(f.cfg.NonceTTL)
		defer f.clock.advance(-f.cfg.NonceTTL)
		r := f.attest(evidenceFor(t, n, testguest.Options{}), "")
		if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceExpired {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("reused nonce", func(t *testing.T) {
		body := evidenceFor(t, f.nonce(), testguest.Options{})
		if r := f.attest(body, ""); r.status != http.StatusOK {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		r := f.attest(body, "")
		if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
			t.Fatalf("second: %d %s", r.status, r.body)
		}
	})
	t.Run("nonce burnt by a denied attempt", func(t *testing.T) {
		n := f.nonce()
		if r := f.attest(evidenceFor(t, n, testguest.Options{VMPL: 1}), ""); r.status != http.StatusForbidden {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		r := f.attest(evidenceFor(t, n, testguest.Options{}), "")
		if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
			t.Fatalf("second: %d %s", r.status, r.body)
		}
	})
}

func TestNonceSingleUseAcrossReplicas(t *testing.T) {
	a := newFixture(t, fixtureOpts{})
	b := newFixture(t, fixtureOpts{stateDir: a.cfg.StateDir})
	if a.srv.Keys.CurrentKID() != b.srv.Keys.CurrentKID() {
		t.Fatal("replicas sign with different keys")
	}
	body := evidenceFor(t, a.nonce(), testguest.Options{})
	if r := b.attest(body, ""); r.status != http.StatusOK {
		t.Fatalf("replica b: %d %s", r.status, r.body)
	}
	r := a.attest(body, "")
	if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
		t.Fatalf("replica a: %d %s", r.status, r.body)
	}
}

func TestRequestErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	good := evidenceFor(t, f.nonce(), testguest.Options{})
	env, _ := evidence.Decode(good)
	nonCanonical := *env
	nonCanonical.RuntimeData = append([]byte(" "), env.RuntimeData...)
	ncBody, _ := nonCanonical.Encode()
	tests := map[string]struct {
		body       []byte
		query      string
		method     string
		path       string
		wantStatus int
		wantCode   string
	}{
		"not JSON":                   {body: []byte("not json"), wantStatus: 400, wantCode: api.CodeMalformed},
		"empty body":                 {body: nil, wantStatus: 400, wantCode: api.CodeMalformed},
		"unknown field":              {body: []byte(`{"version":1,"tee":"sim-sev-snp","extra":1}`), wantStatus: 400, wantCode: api.CodeMalformed},
		"unknown kind":               {body: bytes.Replace(good, []byte(`"sim-sev-snp"`), []byte(`"sgx"`), 1), wantStatus: 400, wantCode: api.CodeMalformed},
		"runtime data not canonical": {body: ncBody, wantStatus: 400, wantCode: api.CodeMalformed},
		"bad audience":               {body: good, query: "?audience=", wantStatus: 400, wantCode: api.CodeMalformed},
		"too many audiences":         {body: good, query: "?audience=a&audience=b&audience=c&audience=d&audience=e&audience=f&audience=g&audience=h&audience=i", wantStatus: 400, wantCode: api.CodeMalformed},
		"body too large":             {body: bytes.Repeat([]byte("x"), int(api.DefaultMaxBodyBytes)+1), wantStatus: 413, wantCode: api.CodeTooLarge},
		"GET attest":                 {method: http.MethodGet, wantStatus: 405, wantCode: api.CodeMethodNotAllowed},
		"unknown path":               {method: http.MethodGet, path: "/v2/attest", wantStatus: 404, wantCode: api.CodeNotFound},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/v1/attest" + tt.query
			}
			r := f.do(method, path, tt.body)
			if r.status != tt.wantStatus || r.errBody(t).Error != tt.wantCode {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", r.header.Get("Content-Type"))
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxBodyBytes = 4096 }})
	body := evidenceFor(t, f.nonce(), testguest.Options{}) // about 8 KiB
	r := f.attest(body, "")
	if r.status != http.StatusRequestEntityTooLarge || r.errBody(t).Error != api.CodeTooLarge {
		t.Fatalf("want 413, got %v", r)
	}
	// Without a Content-Length (chunked) the body is cut while read.
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/v1/attest", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: want 413, got %d", resp.StatusCode)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.RateLimit, c.Burst = 0.001, 2 }})
	f.nonce()
	f.nonce()
	r := f.do(http.MethodPost, "/v1/challenge", nil)
	if r.status != http.StatusTooManyRequests || r.errBody(t).Error != api.CodeRateLimited || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s %v", r.status, r.body, r.header)
	}
	// Reads are not limited.
	if r := f.do(http.MethodGet, "/v1/jwks", nil); r.status != http.StatusOK {
		t.Fatalf("jwks: %d", r.status)
	}
}

func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	n := f.nonce()
	body := evidenceFor(t, n, testguest.Options{})
	if r := f.do(http.MethodGet, "/readyz", nil); r.status != http.StatusOK {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	f.srv.Store.Close()
	r := f.attest(body, "")
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeStoreUnavailable {
		t.Fatalf("attest: %d %s", r.status, r.body)
	}
	r = f.do(http.MethodGet, "/readyz", nil)
	if r.status != http.StatusServiceUnavailable || !hasReason(r.errBody(t).Reasons, "store unreachable") {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodGet, "/healthz", nil); r.status != http.StatusOK {
		t.Fatalf("healthz: %d", r.status)
	}
}

// TestNoTokenWithoutAudit: when the audit record cannot be written the
// token is withheld.
func TestNoTokenWithoutAudit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	body := evidenceFor(t, f.nonce(), testguest.Options{})
	if err := sqExec(f, "DROP TABLE audit"); err != nil {
		t.Fatal(err)
	}
	r := f.attest(body, "")
	if r.status != http.StatusServiceUnavailable || bytes.Contains(r.body, []byte("token")) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
