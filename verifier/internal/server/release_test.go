//go:build cgo

package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

const shippedRelease = "../../../policies/release"

func releasePolicy(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shippedRelease, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// releaseReq asks for a key with tok as bearer ("" sends no header).
func (f *fixture) releaseReq(name, tok string, body []byte) response {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.http.URL+"/v1/keys/"+name+"/release", bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return response{status: resp.StatusCode, body: b.Bytes(), header: resp.Header}
}

// adminClient talks to the fixture's admin handler (the handler the admin
// listener serves).
func (f *fixture) adminClient() *adminclient.Client {
	f.t.Helper()
	srv := httptest.NewServer(f.srv.AdminHandler)
	f.t.Cleanup(srv.Close)
	c, err := adminclient.NewClient(adminclient.ClientConfig{URL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// createKey makes a platform-managed key with the given release policy and
// returns its bytes.
func (f *fixture) createKey(name, policy string) []byte {
	f.t.Helper()
	resp, err := f.adminClient().CreateKey(context.Background(), adminclient.CreateKeyRequest{Name: name, ReleasePolicy: policy, ReturnKey: true})
	if err != nil {
		f.t.Fatal(err)
	}
	k, err := adminapi.DecodeKey(resp.KeyMaterial)
	if err != nil || len(k) != 32 {
		f.t.Fatalf("created key: %d bytes, %v", len(k), err)
	}
	if err := f.secrets.Add("key "+name, k); err != nil {
		f.t.Fatal(err)
	}
	return k
}

func decodeRelease(t testing.TB, r response) api.ReleaseResponse {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("release: %v", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q", ct)
	}
	var out api.ReleaseResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// tpmUnwrap opens a released JWE the way the agent does: the content
// encryption key is decrypted inside the TPM (simulator) by the runtime key
// shared/tpm.NewDecryptionKey made there.
func tpmUnwrap(t testing.TB, jwe string) []byte {
	t.Helper()
	key, err := keywrap.Unwrap([]byte(jwe), keywrap.OAEPDecrypterFunc(guest.DecryptKey().Decrypt))
	if err != nil {
		t.Fatalf("unwrapping in the TPM: %v", err)
	}
	return key
}

// TestReleaseToTPM is the guest side with a TPM-resident key: the token's
// runtime key lives in the TPM simulator, the key is released through the
// real HTTP handler and decrypted with keywrap.Unwrap and the TPM.
func TestReleaseToTPM(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	want := f.createKey("os-disk", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	out := decodeRelease(t, f.releaseReq("os-disk", tok, nil))
	if out.Key != "os-disk" || out.Version != 1 || strings.Count(out.JWE, ".") != 4 {
		t.Fatalf("answer %+v", out)
	}
	if got := tpmUnwrap(t, out.JWE); !bytes.Equal(got, want) {
		t.Fatal("the key unwrapped in the TPM is not the stored key")
	}
	// The agent's client reads exactly {"jwe": ...} as JSON.
	var agentView struct {
		JWE string `json:"jwe"`
	}
	if err := json.Unmarshal(f.releaseReq("os-disk", tok, nil).body, &agentView); err != nil || agentView.JWE == "" {
		t.Fatalf("agent's view: %v", err)
	}

	recs, err := f.srv.Store.AuditRecords(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, tok)
	var granted []store.AuditRecord
	for _, r := range recs {
		if r.Event == "release" {
			granted = append(granted, r)
		}
		// The audit log never holds key material or tokens.
		for _, s := range append([]string{r.Subject, r.TokenID, r.KeyName, r.Remote}, r.Reasons...) {
			if strings.Contains(s, base64.RawURLEncoding.EncodeToString(want)) || strings.Contains(s, tok[:40]) {
				t.Fatalf("audit record %+v holds a secret", r)
			}
		}
	}
	if len(granted) != 2 {
		t.Fatalf("%d release records, want 2", len(granted))
	}
	r := granted[0]
	if r.Outcome != "granted" || r.Subject != c["sub"] || r.TokenID != c["jti"] || r.KeyName != "os-disk" ||
		r.KeyVersion != 1 || r.TEE != "sim-sev-snp" || r.PolicyID != "confidant.release.sim_development" {
		t.Fatalf("audit record %+v", r)
	}
}

func TestReleaseVersions(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ac := f.adminClient()
	ctx := context.Background()
	k1 := f.createKey("disk", releasePolicy(t, "sim_development.rego"))
	rot, err := ac.RotateKey(ctx, "disk", adminclient.RotateKeyRequest{ReturnKey: true})
	if err != nil || rot.Version != 2 {
		t.Fatalf("rotate: %+v, %v", rot, err)
	}
	k2, _ := adminapi.DecodeKey(rot.KeyMaterial)
	tok := f.token(testguest.Options{}, "")
	for body, want := range map[string][]byte{"": k2, `{"version": 1}`: k1, `{"version":2}`: k2, `{}`: k2} {
		out := decodeRelease(t, f.releaseReq("disk", tok, []byte(body)))
		if !bytes.Equal(tpmUnwrap(t, out.JWE), want) {
			t.Fatalf("body %q released the wrong version (%d)", body, out.Version)
		}
	}
	for body, wantStatus := range map[string]int{
		`{"version": -1}`:                         http.StatusBadRequest,
		`{"version": "1"}`:                        http.StatusBadRequest,
		`{"version": 1, "x": 1}`:                  http.StatusBadRequest,
		`{"version": 9}`:                          http.StatusNotFound,
		strings.Repeat(" ", api.MaxReleaseBody+1): http.StatusRequestEntityTooLarge,
	} {
		if r := f.releaseReq("disk", tok, []byte(body)); r.status != wantStatus {
			t.Errorf("body %.20q: %v, want %d", body, r, wantStatus)
		}
	}
}

// TestReleaseRefused has one case per way a release must be refused.
func TestReleaseRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("sim-key", releasePolicy(t, "sim_development.rego"))
	f.createKey("default-key", "") // the default policy: hardware only
	good := f.token(testguest.Options{}, "")
	if r := f.releaseReq("sim-key", good, nil); r.status != http.StatusOK {
		t.Fatalf("good token: %v", r)
	}

	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	b64 := base64.RawURLEncoding.EncodeToString
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, f.srv.Keys.CurrentKID())
	_ = hdr.Set(jws.TypeKey, "JWT")
	strangerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), strangerKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	algNone := b64([]byte(`{"alg":"none","kid":"`+f.srv.Keys.CurrentKID()+`","typ":"JWT"}`)) + "." + parts[1] + "."
	tampered := parts[0] + "." + b64(bytes.Replace(payload, []byte(`"affirming"`), []byte(`"affirminG"`), 1)) + "." + parts[2]

	signed := func(edit func(c *token.Claims)) string { return f.signClaims(t, 0, edit) }
	noRuntimeKey := signed(func(*token.Claims) {})
	symmetricKey := signed(func(c *token.Claims) {
		c.Runtime.Keys = json.RawMessage(`{"keys":[{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`)
	})
	other := newFixture(t, fixtureOpts{})
	otherIssuer := other.token(testguest.Options{}, "")
	wrongAud := f.token(testguest.Options{}, "?audience=someone-else")
	expired := f.token(testguest.Options{}, "")

	tests := map[string]struct {
		key, token string
		advance    bool
		wantStatus int
		wantCode   string
		wantReason string
	}{
		"no bearer token":         {key: "sim-key", wantStatus: 401, wantCode: api.CodeInvalidToken},
		"garbage token":           {key: "sim-key", token: "a.b.c", wantStatus: 401, wantCode: api.CodeInvalidToken},
		"forged token":            {key: "sim-key", token: string(forged), wantStatus: 401, wantCode: api.CodeInvalidToken},
		"tampered claims":         {key: "sim-key", token: tampered, wantStatus: 401, wantCode: api.CodeInvalidToken},
		"alg none":                {key: "sim-key", token: algNone, wantStatus: 401, wantCode: api.CodeInvalidToken},
		"expired token":           {key: "sim-key", token: expired, advance: true, wantStatus: 401, wantCode: api.CodeInvalidToken},
		"token of another issuer": {key: "sim-key", token: otherIssuer, wantStatus: 401, wantCode: api.CodeInvalidToken},
		"wrong audience":          {key: "sim-key", token: wrongAud, wantStatus: 401, wantCode: api.CodeInvalidToken},
		"no runtime key":          {key: "sim-key", token: noRuntimeKey, wantStatus: 403, wantCode: api.CodeNoRuntimeKey},
		"symmetric runtime key":   {key: "sim-key", token: symmetricKey, wantStatus: 403, wantCode: api.CodeNoRuntimeKey},
		"policy denies":           {key: "default-key", token: good, wantStatus: 403, wantCode: api.CodeReleaseDenied, wantReason: "evidence came from the simulated TEE"},
		"policy lists every reason": {key: "default-key", token: good, wantStatus: 403, wantCode: api.CodeReleaseDenied,
			wantReason: "TEE kind is sim-sev-snp: the default policy releases only to SEV-SNP or TDX hardware"},
		"unknown key":  {key: "no-such-key", token: good, wantStatus: 404, wantCode: api.CodeKeyUnknown},
		"invalid name": {key: "..", token: good, wantStatus: 404, wantCode: api.CodeKeyUnknown},
	}
	before, _ := f.srv.Store.AuditHead(context.Background())
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if tt.advance {
				d := f.cfg.TokenTTL + token.ClockSkew + 1e9
				f.clock.advance(d)
				defer f.clock.advance(-d)
			}
			r := f.releaseReq(tt.key, tt.token, nil)
			if r.status != tt.wantStatus || r.errBody(t).Error != tt.wantCode {
				t.Fatalf("%v, want %d %s", r, tt.wantStatus, tt.wantCode)
			}
			if strings.Contains(string(r.body), "jwe") {
				t.Fatal("a refused release carries a JWE")
			}
			if tt.wantStatus == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			if tt.wantReason != "" && !hasReason(r.errBody(t).Reasons, tt.wantReason) {
				t.Errorf("reasons %q lack %q", r.errBody(t).Reasons, tt.wantReason)
			}
		})
	}
	// Every refusal is audited with its code.
	recs, err := f.srv.Store.AuditRecords(context.Background(), before.LastID, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Event == "release" {
			n++
			if r.Outcome == "granted" || len(r.Reasons) == 0 {
				t.Errorf("refusal audited as %+v", r)
			}
		}
	}
	if n != len(tests) {
		t.Fatalf("%d refusals audited, want %d", n, len(tests))
	}
	// The policy denial names the policy and the guest.
	for _, r := range recs {
		if r.Outcome == api.CodeReleaseDenied && (r.PolicyID != "confidant.release.default_policy" || r.Subject == "" || r.TokenID == "") {
			t.Errorf("denial record %+v", r)
		}
	}
}

func TestReleaseStoreUnavailable(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	f.srv.Store.Close()
	r := f.releaseReq("k", tok, nil)
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeStoreUnavailable {
		t.Fatalf("%v", r)
	}
}

// TestNoKeyWithoutAudit: when the audit record of a granted release cannot
// be written, the key is withheld.
func TestNoKeyWithoutAudit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	if err := sqExec(f, "DROP TABLE audit_head"); err != nil {
		t.Fatal(err)
	}
	r := f.releaseReq("k", tok, nil)
	if r.status != http.StatusServiceUnavailable || bytes.Contains(r.body, []byte("jwe")) {
		t.Fatalf("%v", r)
	}
}

// TestAdminNotOnPublicPort: the public handler does not serve the admin
// API.
func TestAdminNotOnPublicPort(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, p := range []string{adminclient.PathKeys, adminclient.PathAuditVerify} {
		if r := f.do(http.MethodGet, p, nil); r.status != http.StatusNotFound {
			t.Fatalf("GET %s on the public port: %v", p, r)
		}
	}
	if r := f.do(http.MethodPost, adminclient.PathKeys, []byte(`{"name":"x"}`)); r.status != http.StatusNotFound {
		t.Fatalf("POST on the public port: %v", r)
	}
}

// BenchmarkRelease measures a key release in process: "handler" is the
// whole HTTP handler (token verification, release policy, unsealing, JWE
// wrapping and the audit write to SQLite); "core" leaves out HTTP and the
// audit write (token verification, policy and wrapping).
func BenchmarkRelease(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	f.createKey("os-disk", releasePolicy(b, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	b.Run("handler", func(b *testing.B) {
		h := f.srv.Handler
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, "/v1/keys/os-disk/release", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := &recorder{header: http.Header{}}
			h.ServeHTTP(rec, req)
			if rec.status != http.StatusOK {
				b.Fatalf("release: %d %s", rec.status, rec.body)
			}
		}
	})
	b.Run("core", func(b *testing.B) {
		iss, err := token.NewIssuer(token.IssuerConfig{Keys: f.srv.Keys, Issuer: f.cfg.Issuer, Now: f.clock.now})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for b.Loop() {
			claims, err := iss.VerifyClaims(ctx, tok, "test-audience")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.srv.Release.Release(ctx, releaseRequest("os-disk", claims)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func releaseRequest(name string, claims map[string]any) release.Request {
	return release.Request{Name: name, Claims: claims}
}
