//go:build cgo

package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

var b64url = base64.RawURLEncoding.EncodeToString

// releaseCase asks for key with the token mint makes, refused with status
// and code; every refused release is audited with its code.
func releaseCase(name, key string, mint func(t *testing.T, c *corpus) string, status int, code, reason string) hostileCase {
	return hostileCase{group: "tokens at release", name: name,
		send: func(t *testing.T, c *corpus) response {
			return c.f.releaseReq(key, mint(t, c), nil)
		},
		status: status, code: code, reason: reason, audit: []string{code}}
}

// signClaims signs claims of a simulated guest, as edit changes them,
// with the verifier's own current key, issued shift from the fixture's
// now.
func (f *fixture) signClaims(t testing.TB, shift time.Duration, edit func(*token.Claims)) string {
	t.Helper()
	now := func() time.Time { return f.clock.now().Add(shift) }
	iss, err := token.NewIssuer(token.IssuerConfig{Keys: f.srv.Keys, Issuer: f.cfg.Issuer, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cl := &token.Claims{Subject: "sim-sev-snp:x", Audience: token.Audience{"test-audience"}, Status: token.Affirming,
		DbgStat: token.DbgDisabledPermanently, TEE: map[string]any{"kind": "sim-sev-snp", "simulated": true,
			"policy": map[string]any{"debug": false}},
		Runtime: token.Runtime{Keys: json.RawMessage(`{"keys":[]}`)}}
	edit(cl)
	tok, err := iss.Sign(cl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withHeader re-signs the good token's payload under header fields hdr
// with key (nil: a fresh stranger key) and alg.
func withHeader(t *testing.T, c *corpus, alg jwa.SignatureAlgorithm, key any, hdr map[string]any) string {
	t.Helper()
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(c.good, ".")[1])
	h := jws.NewHeaders()
	for k, v := range hdr {
		_ = h.Set(k, v)
	}
	if key == nil {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func releaseCases() []hostileCase {
	const bad = http.StatusUnauthorized
	inv := api.CodeInvalidToken
	good := func(_ *testing.T, c *corpus) string { return c.good }
	parts := func(c *corpus) []string { return strings.Split(c.good, ".") }
	payloadEdit := func(old, new string) func(*testing.T, *corpus) string {
		return func(t *testing.T, c *corpus) string {
			p := parts(c)
			payload, _ := base64.RawURLEncoding.DecodeString(p[1])
			if !bytes.Contains(payload, []byte(old)) {
				t.Fatalf("the token has no %s", old)
			}
			return p[0] + "." + b64url(bytes.Replace(payload, []byte(old), []byte(new), 1)) + "." + p[2]
		}
	}
	header := func(h string) func(*testing.T, *corpus) string {
		return func(_ *testing.T, c *corpus) string {
			p := parts(c)
			return b64url([]byte(h)) + "." + p[1] + "." + p[2]
		}
	}
	kid := func(c *corpus) string { return c.f.srv.Keys.CurrentKID() }
	return []hostileCase{
		releaseCase("no token", "sim-key", func(*testing.T, *corpus) string { return "" }, bad, inv, ""),
		releaseCase("garbage token", "sim-key", func(*testing.T, *corpus) string { return "a.b.c" }, bad, inv, ""),
		releaseCase("two-part token", "sim-key", func(_ *testing.T, c *corpus) string { return strings.Join(parts(c)[:2], ".") }, bad, inv, ""),
		releaseCase("signature stripped", "sim-key", func(_ *testing.T, c *corpus) string { return strings.Join(parts(c)[:2], ".") + "." }, bad, inv, ""),
		releaseCase("signature of another token", "sim-key", func(t *testing.T, c *corpus) string {
			p := parts(c)
			return p[0] + "." + p[1] + "." + strings.Split(c.other, ".")[2]
		}, bad, inv, ""),
		releaseCase("status changed", "sim-key", payloadEdit(`"status":"affirming"`, `"status":"warning"`), bad, inv, ""),
		releaseCase("subject changed", "sim-key", payloadEdit(`"sub":"sim`, `"sub":"Sim`), bad, inv, ""),
		releaseCase("alg none", "sim-key", func(_ *testing.T, c *corpus) string {
			return b64url([]byte(`{"alg":"none","kid":"`+kid(c)+`","typ":"JWT"}`)) + "." + parts(c)[1] + "."
		}, bad, inv, ""),
		releaseCase("alg None with a signature", "sim-key", func(_ *testing.T, c *corpus) string {
			return header(`{"alg":"None","kid":"`+kid(c)+`","typ":"JWT"}`)(nil, c)
		}, bad, inv, ""),
		releaseCase("alg ES384 label on an ES256 signature", "sim-key", func(_ *testing.T, c *corpus) string {
			return header(`{"alg":"ES384","kid":"`+kid(c)+`","typ":"JWT"}`)(nil, c)
		}, bad, inv, ""),
		releaseCase("HS256 keyed with the public key", "sim-key", func(t *testing.T, c *corpus) string {
			set, err := c.f.srv.Keys.PublicSet()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := json.Marshal(set)
			return withHeader(t, c, jwa.HS256(), pub, map[string]any{"kid": kid(c), "typ": "JWT"})
		}, bad, inv, ""),
		releaseCase("signed by a stranger under our kid", "sim-key", func(t *testing.T, c *corpus) string {
			return withHeader(t, c, jwa.ES256(), nil, map[string]any{"kid": kid(c), "typ": "JWT"})
		}, bad, inv, ""),
		releaseCase("unknown kid", "sim-key", func(t *testing.T, c *corpus) string {
			return withHeader(t, c, jwa.ES256(), nil, map[string]any{"kid": "no-such-kid", "typ": "JWT"})
		}, bad, inv, ""),
		releaseCase("no kid", "sim-key", func(t *testing.T, c *corpus) string {
			return withHeader(t, c, jwa.ES256(), nil, map[string]any{"typ": "JWT"})
		}, bad, inv, ""),
		releaseCase("crit header", "sim-key", func(_ *testing.T, c *corpus) string {
			return header(`{"alg":"ES256","kid":"`+kid(c)+`","crit":["exp"],"typ":"JWT"}`)(nil, c)
		}, bad, inv, ""),
		releaseCase("expired", "sim-key", func(t *testing.T, c *corpus) string {
			return c.f.signClaims(t, -2*c.f.cfg.TokenTTL-token.ClockSkew, func(*token.Claims) {})
		}, bad, inv, ""),
		releaseCase("not yet valid", "sim-key", func(t *testing.T, c *corpus) string {
			return c.f.signClaims(t, time.Hour, func(*token.Claims) {})
		}, bad, inv, ""),
		releaseCase("another issuer", "sim-key", func(t *testing.T, c *corpus) string {
			return newFixture(t, fixtureOpts{}).token(testguest.Options{}, "")
		}, bad, inv, ""),
		releaseCase("another audience", "sim-key", func(_ *testing.T, c *corpus) string { return c.aud }, bad, inv, ""),
		releaseCase("no runtime key", "sim-key", func(t *testing.T, c *corpus) string {
			return c.f.signClaims(t, 0, func(*token.Claims) {})
		}, http.StatusForbidden, api.CodeNoRuntimeKey, ""),
		releaseCase("symmetric runtime key", "sim-key", func(t *testing.T, c *corpus) string {
			return c.f.signClaims(t, 0, func(cl *token.Claims) {
				cl.Runtime.Keys = json.RawMessage(`{"keys":[{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`)
			})
		}, http.StatusForbidden, api.CodeNoRuntimeKey, ""),
		releaseCase("release policy says no", "default-key", good, http.StatusForbidden, api.CodeReleaseDenied, "simulated TEE"),
		releaseCase("unknown key", "no-such-key", good, http.StatusNotFound, api.CodeKeyUnknown, ""),
		releaseCase("name ..", "..", good, http.StatusNotFound, api.CodeKeyUnknown, ""),
		releaseCase("name of 300 bytes", strings.Repeat("k", 300), good, http.StatusNotFound, api.CodeKeyUnknown, ""),
		{group: "tokens at release", name: "Basic scheme", send: func(t *testing.T, c *corpus) response {
			return c.raw(t, http.MethodPost, "/v1/keys/sim-key/release", map[string]string{"Authorization": "Basic " + c.good}, nil)
		}, status: bad, code: inv, audit: []string{inv}},
		{group: "tokens at release", name: "bearer of 64 KiB + 1", send: func(t *testing.T, c *corpus) response {
			return c.raw(t, http.MethodPost, "/v1/keys/sim-key/release", map[string]string{"Authorization": "Bearer " + strings.Repeat("a", 64<<10+1)}, nil)
		}, status: bad, code: inv, audit: []string{inv}},
		{group: "tokens at release", name: "empty bearer", send: func(t *testing.T, c *corpus) response {
			return c.raw(t, http.MethodPost, "/v1/keys/sim-key/release", map[string]string{"Authorization": "Bearer "}, nil)
		}, status: bad, code: inv, audit: []string{inv}},
	}
}

// adminCases go to the admin handler, which is never on the public port.
func adminCases() []hostileCase {
	const g = "admin+policy abuse"
	send := func(method, path, ctype string, body string) func(t *testing.T, c *corpus) response {
		return func(t *testing.T, c *corpus) response {
			srv := httptest.NewServer(c.f.srv.AdminHandler)
			defer srv.Close()
			req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", ctype)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return response{status: resp.StatusCode, body: b.Bytes(), header: resp.Header}
		}
	}
	const js = "application/json"
	create := func(name, body string, code string) hostileCase {
		return hostileCase{group: g, name: name, send: send(http.MethodPost, adminclient.PathKeys, js, body), status: http.StatusBadRequest, code: code,
			audit: []string{code}}
	}
	// policy loads an appraisal policy whose result rule runs expr.
	policy := func(name, expr, reason string) hostileCase {
		src := "package corpus.appraisal\n\nkinds := {\"sim-sev-snp\"}\n\n" +
			"x := " + expr + "\n\nresult := {\"verdict\": \"affirming\", \"reasons\": [], \"claims\": {\"x\": x}}\n"
		return hostileCase{group: g, name: name, send: send(http.MethodPut, adminclient.PathPolicies+"/sim-sev-snp", "text/plain", src),
			status: http.StatusBadRequest, code: api.CodeInvalidPolicy, reason: reason, audit: []string{api.CodeInvalidPolicy}}
	}
	// release creates a key whose release policy allows when expr holds.
	release := func(name, expr, reason string) hostileCase {
		src := "package corpus.release\n\nresult := {\"allow\": true, \"reasons\": []} if " + expr + "\n"
		body, _ := json.Marshal(adminclient.CreateKeyRequest{Name: "k-" + strings.ReplaceAll(name, " ", "-"), ReleasePolicy: src})
		return hostileCase{group: g, name: name, send: send(http.MethodPost, adminclient.PathKeys, js, string(body)),
			status: http.StatusBadRequest, code: api.CodeInvalidPolicy, reason: reason, audit: []string{api.CodeInvalidPolicy}}
	}
	return []hostileCase{
		create("key name with a newline", `{"name":"a\n2026-01-01 attest affirming"}`, api.CodeMalformed),
		create("key name with ESC", `{"name":"\u001b]0;pwned\u0007"}`, api.CodeMalformed),
		create("key name with a slash", `{"name":"a/b"}`, api.CodeMalformed),
		create("key name empty", `{"name":""}`, api.CodeMalformed),
		create("key material too short", `{"name":"short","key_material":"AAAA"}`, api.CodeMalformed),
		create("return_key with imported material", `{"name":"imp","key_material":"`+b64url(make([]byte, 32))+`","return_key":true}`, api.CodeMalformed),
		{group: g, name: "unknown field", send: send(http.MethodPost, adminclient.PathKeys, js, `{"name":"x","owner":"me"}`),
			status: http.StatusBadRequest, code: api.CodeMalformed}, // refused before it is an admin action: not audited
		policy("appraisal policy with a syntax error", "{", "rego_parse_error"),
		policy("appraisal policy calling http.send", `http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code`, "http.send"),
		policy("appraisal policy resolving names", `net.lookup_ip_addr("localhost")`, "net.lookup_ip_addr"),
		policy("appraisal policy reading the clock", "time.now_ns()", "time.now_ns"),
		policy("appraisal policy reading opa.runtime", "opa.runtime().env", "opa.runtime"),
		policy("appraisal policy drawing a UUID", `uuid.rfc4122("x")`, "uuid.rfc4122"),
		release("release policy calling http.send", `http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200`, "http.send"),
		release("release policy resolving names", `count(net.lookup_ip_addr("localhost")) > 0`, "net.lookup_ip_addr"),
		release("release policy drawing random numbers", `rand.intn("x", 2) == 1`, "rand.intn"),
		release("release policy reading the clock", `time.now_ns() > 0`, "time.now_ns"),
		{group: g, name: "reference values not JSON", send: send(http.MethodPut, adminclient.PathReferenceValues, js, "{"),
			status: http.StatusBadRequest, code: api.CodeInvalidPolicy, audit: []string{api.CodeInvalidPolicy}},
	}
}

// injectionCases put terminal and log control sequences where a request
// names a key; the audit log must hold them escaped, never raw (checked
// for every case by checkAudit).
func injectionCases() []hostileCase {
	const g = "log+audit injection"
	named := func(name, escaped string) hostileCase {
		return hostileCase{group: g, name: name, send: func(t *testing.T, c *corpus) response {
			return c.raw(t, http.MethodPost, "/v1/keys/"+escaped+"/release", map[string]string{"Authorization": "Bearer " + c.good}, nil)
		}, status: http.StatusNotFound, code: api.CodeKeyUnknown, audit: []string{api.CodeKeyUnknown}}
	}
	return []hostileCase{
		named("forged audit row after a newline", "x%0A2026-12-07T00:00:00Z%20%2399%20release%3A%20granted%20key%3Dos-disk"),
		named("carriage return", "x%0Dgranted"),
		named("OSC window title", "%1B%5D0%3Bpwned%07"),
		named("CSI clear screen", "%1B%5B2J%1B%5BH"),
		named("NUL byte", "os-disk%00.evil"),
		named("DEL and backspaces", "granted%08%08%08%08%08%08%08denied%7F"),
		named("right-to-left override", "%E2%80%AEksid-so"),
		named("invalid UTF-8", "%FF%FE%FD"),
		named("C1 control CSI", "%C2%9B2J"),
		named("name of 4 KiB", strings.Repeat("%1B", 1365)),
	}
}
