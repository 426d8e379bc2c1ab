//go:build cgo

package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (any of 127.0.0.0/8): a distinct client to the verifier.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// send makes one request with c; headers are set as given.
func (f *fixture) send(c *http.Client, method, path string, hdr map[string]string, body []byte) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
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

// TestMetricsLabelsBounded sends a thousand requests with invented methods
// and paths: the request metric's labels stay within small fixed sets.
func TestMetricsLabelsBounded(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(alphabet string) string {
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	prefixes := []string{"/", "/v1/", "/v1/keys/", "/.well-known/", "/metrics/"}
	for i := range 1000 {
		method := word("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
		if i%5 == 0 {
			method = []string{"GET", "POST", "PUT", "DELETE"}[rng.IntN(4)]
		}
		path := prefixes[rng.IntN(len(prefixes))] + word("abcdefghijklmnopqrstuvwxyz0123456789-_")
		if i%7 == 0 {
			path += "/release"
		}
		f.send(f.http.Client(), method, path, nil, nil)
	}
	mfs, err := f.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{"method": {}, "route": {}, "code": {}}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() != "confidant_verifier_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()][lp.GetValue()] = true
			}
		}
	}
	// 9 standard methods + other; the routes + unmatched; a few codes.
	limits := map[string]int{"method": 10, "route": 9, "code": 8}
	for name, values := range labels {
		if len(values) == 0 || len(values) > limits[name] {
			t.Errorf("label %s has %d values (limit %d): %v", name, len(values), limits[name], keys(values))
		}
	}
	if !labels["method"]["other"] || !labels["route"]["unmatched"] {
		t.Errorf("invented methods and paths are not labelled other/unmatched: %v %v", keys(labels["method"]), keys(labels["route"]))
	}
	if series > 10*9*8 {
		t.Errorf("%d series", series)
	}
}

// counter reads an unlabelled counter from the fixture's registry.
func counter(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRateLimitPerClient: with a per-client limit, a noisy client is
// refused (429 rate_limited, Retry-After) while another is not.
func TestRateLimitPerClient(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.RateLimit, c.Burst = 0.001, 3 }})
	noisy, quiet := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	limited := 0
	for range 20 {
		r := f.send(noisy, http.MethodPost, "/v1/challenge", nil, nil)
		switch {
		case r.status == http.StatusOK:
		case r.status == http.StatusTooManyRequests && r.errBody(t).Error == api.CodeRateLimited && r.header.Get("Retry-After") != "":
			limited++
		default:
			t.Fatalf("noisy client: %v", r)
		}
	}
	if limited != 17 {
		t.Fatalf("noisy client: %d of 20 refused, want 17 (burst 3)", limited)
	}
	for range 3 {
		if r := f.send(quiet, http.MethodPost, "/v1/challenge", nil, nil); r.status != http.StatusOK {
			t.Fatalf("quiet client after the noisy one: %v", r)
		}
	}
}

// TestNoRateLimitByDefault: the default configuration has no rate limit; a
// fleet's burst from one address is served.
func TestNoRateLimitByDefault(t *testing.T) {
	if d := DefaultConfig(); d.RateLimit != 0 {
		t.Fatalf("default rate limit %v, want 0 (off)", d.RateLimit)
	}
	f := newFixture(t, fixtureOpts{config: func(c *Config) {
		d := DefaultConfig()
		c.RateLimit, c.Burst = d.RateLimit, d.Burst
	}})
	for i := range 500 {
		if r := f.do(http.MethodPost, "/v1/challenge", nil); r.status != http.StatusOK {
			t.Fatalf("challenge %d: %v", i, r)
		}
	}
}

// TestContentType: every POST endpoint refuses a body not declared as JSON
// (415 unsupported_media_type) and takes one that is.
func TestContentType(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("sim-key", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	endpoints := map[string]struct {
		path string
		hdr  map[string]string
		body func() []byte
		// wantOK is the status of a well-typed request.
		wantOK int
	}{
		"challenge": {path: "/v1/challenge", body: func() []byte { return []byte("{}") }, wantOK: 200},
		"attest":    {path: "/v1/attest", body: func() []byte { return evidenceFor(t, f.nonce(), testguest.Options{}) }, wantOK: 200},
		"release":   {path: "/v1/keys/sim-key/release", hdr: bearer, body: func() []byte { return []byte(`{"version":1}`) }, wantOK: 200},
	}
	types := map[string]struct {
		ctype  []string // nil: no Content-Type
		empty  bool     // send no body
		wantOK bool
	}{
		"application/json":                {ctype: []string{"application/json"}, wantOK: true},
		"with charset":                    {ctype: []string{"application/json; charset=utf-8"}, wantOK: true},
		"upper case":                      {ctype: []string{"Application/JSON; Charset=UTF-8"}, wantOK: true},
		"text/plain":                      {ctype: []string{"text/plain"}},
		"form":                            {ctype: []string{"application/x-www-form-urlencoded"}},
		"other charset":                   {ctype: []string{"application/json; charset=latin1"}},
		"other parameter":                 {ctype: []string{"application/json; boundary=x"}},
		"json suffix":                     {ctype: []string{"application/jose+json"}},
		"malformed":                       {ctype: []string{"application/json;;"}},
		"two values":                      {ctype: []string{"application/json", "text/plain"}},
		"none, with a body":               {},
		"text/plain, without a body":      {ctype: []string{"text/plain"}, empty: true},
		"none, without a body (accepted)": {empty: true, wantOK: true},
	}
	for ename, e := range endpoints {
		for tname, ct := range types {
			t.Run(ename+"/"+tname, func(t *testing.T) {
				var body []byte
				if !ct.empty {
					body = e.body()
				}
				req, err := http.NewRequest(http.MethodPost, f.http.URL+e.path, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range e.hdr {
					req.Header.Set(k, v)
				}
				req.Header["Content-Type"] = ct.ctype
				resp, err := f.http.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r := response{status: resp.StatusCode, body: b, header: resp.Header}
				if !ct.wantOK {
					if r.status != http.StatusUnsupportedMediaType || r.errBody(t).Error != api.CodeMediaType {
						t.Fatalf("%v, want 415 %s", r, api.CodeMediaType)
					}
					return
				}
				want := e.wantOK
				if ct.empty && ename == "attest" {
					want = http.StatusBadRequest // no envelope: malformed, not 415
				}
				if r.status != want {
					t.Fatalf("%v, want %d", r, want)
				}
			})
		}
	}
}

// TestMalformedAttestSpendsNonce: an attempt whose envelope or runtime data
// is malformed still spends the nonce it names; the nonce cannot be used
// again, and the attempt is audited with the redemption.
func TestMalformedAttestSpendsNonce(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tests := map[string]func(good []byte) []byte{
		// An unknown envelope field: Decode refuses the envelope.
		"unknown envelope field": func(good []byte) []byte {
			return bytes.Replace(good, []byte(`{`), []byte(`{"extra":1,`), 1)
		},
		// A report of the wrong size.
		"report truncated": func(good []byte) []byte {
			i := bytes.Index(good, []byte(`"report":"`)) + len(`"report":"`)
			return append(bytes.Clone(good[:i]), good[i+8:]...)
		},
		"trailing data": func(good []byte) []byte { return append(bytes.Clone(good), []byte(" x")...) },
	}
	for name, mangle := range tests {
		t.Run(name, func(t *testing.T) {
			before, err := f.srv.Store.AuditHead(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			n := f.nonce()
			good := evidenceFor(t, n, testguest.Options{})
			if r := f.attest(mangle(good), ""); r.status != http.StatusBadRequest || r.errBody(t).Error != api.CodeMalformed {
				t.Fatalf("malformed attempt: %v", r)
			}
			r := f.attest(good, "")
			if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
				t.Fatalf("good evidence after a malformed attempt with its nonce: %v, want 401 %s", r, api.CodeNonceReused)
			}
			recs, err := f.srv.Store.AuditRecords(context.Background(), before.LastID, 10)
			if err != nil || len(recs) != 2 || recs[0].Outcome != api.CodeMalformed || recs[1].Outcome != api.CodeNonceReused {
				t.Fatalf("audit records %+v, %v", recs, err)
			}
		})
	}
}

// TestFailureAuditPerClient: failed attempts that prove nothing are
// recorded up to the per-client burst; the rest are counted and summarized
// in one row per client, and another client's failures are still
// recorded. Attempts with a genuine nonce are always recorded.
func TestFailureAuditPerClient(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.attest.Run(ctx) }()
	noisy, quiet := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	const attempts = 3 * attest.DefaultFailureAuditBurst
	for i := range attempts {
		var r response
		if i%2 == 0 {
			r = f.send(noisy, http.MethodPost, "/v1/keys/k/release", map[string]string{"Authorization": "Bearer a.b.c"}, nil)
		} else {
			r = f.send(noisy, http.MethodPost, "/v1/attest", map[string]string{"Content-Type": "application/json"}, []byte("{"))
		}
		if r.status != http.StatusUnauthorized && r.status != http.StatusBadRequest {
			t.Fatalf("attempt %d: %v", i, r)
		}
	}
	// A denied attestation with a genuine nonce from the noisy client is
	// recorded all the same (its nonce is spent in the same write).
	body := evidenceFor(t, f.nonce(), testguest.Options{VMPL: 1})
	if r := f.send(noisy, http.MethodPost, "/v1/attest", map[string]string{"Content-Type": "application/json"}, body); r.status != http.StatusForbidden {
		t.Fatalf("denied attestation: %v", r)
	}
	if r := f.send(quiet, http.MethodPost, "/v1/keys/k/release", nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("quiet client: %v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs, err := f.srv.Store.AuditRecords(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var summaries []store.AuditRecord
	for _, r := range recs {
		count[r.Remote+" "+r.Outcome]++
		if r.Event == attest.EventFailuresSuppressed {
			summaries = append(summaries, r)
		}
	}
	recorded := count["127.0.0.2 "+api.CodeInvalidToken] + count["127.0.0.2 "+api.CodeMalformed]
	if recorded != attest.DefaultFailureAuditBurst || count["127.0.0.2 "+api.CodeDenied] != 1 || count["127.0.0.3 "+api.CodeInvalidToken] != 1 {
		t.Fatalf("audit rows by client and outcome: %v", count)
	}
	if len(summaries) != 1 || summaries[0].Remote != "127.0.0.2" || summaries[0].Outcome != attest.OutcomeFailuresSuppressed {
		t.Fatalf("summaries %+v", summaries)
	}
	suppressed := attempts - attest.DefaultFailureAuditBurst
	want := []string{fmt.Sprintf("%d more failed attempts from 127.0.0.2 not recorded", suppressed),
		fmt.Sprintf("%s %d", api.CodeInvalidToken, attempts/2-count["127.0.0.2 "+api.CodeInvalidToken]),
		fmt.Sprintf("%s %d", api.CodeMalformed, attempts/2-count["127.0.0.2 "+api.CodeMalformed])}
	for _, w := range want {
		if !hasReason(summaries[0].Reasons, w) {
			t.Errorf("summary %q lacks %q", summaries[0].Reasons, w)
		}
	}
	if got := counter(t, f, "confidant_verifier_audit_suppressed_total"); got != float64(suppressed) {
		t.Errorf("audit_suppressed_total %v, want %d", got, suppressed)
	}
}

// TestBearerScheme: only the Bearer scheme carries the token, and a bearer
// over 64 KiB is refused unread.
func TestBearerScheme(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("sim-key", releasePolicy(t, "sim_development.rego"))
	good := f.token(testguest.Options{}, "")
	tests := map[string]struct {
		auth       string
		wantStatus int
		wantReason string
	}{
		"Bearer":           {auth: "Bearer " + good, wantStatus: 200},
		"bearer, any case": {auth: "bEaReR " + good, wantStatus: 200},
		"Basic scheme":     {auth: "Basic " + good, wantStatus: 401, wantReason: "no bearer token"},
		"Token scheme":     {auth: "Token " + good, wantStatus: 401, wantReason: "no bearer token"},
		"no scheme":        {auth: good, wantStatus: 401, wantReason: "no bearer token"},
		"over 64 KiB":      {auth: "Bearer " + strings.Repeat("a", 64<<10+1), wantStatus: 401, wantReason: "over 64 KiB"},
		"valid token padded over 64 KiB": {auth: "Bearer " + good + strings.Repeat("A", 64<<10), wantStatus: 401,
			wantReason: "over 64 KiB"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := f.send(f.http.Client(), http.MethodPost, "/v1/keys/sim-key/release", map[string]string{"Authorization": tt.auth}, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("%v, want %d", r, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				return
			}
			if e := r.errBody(t); e.Error != api.CodeInvalidToken || !hasReason(e.Reasons, tt.wantReason) {
				t.Fatalf("%v, want %s with reason %q", r, api.CodeInvalidToken, tt.wantReason)
			}
			if bytes.Contains(r.body, []byte("jwe")) {
				t.Fatal("a refused release carries a JWE")
			}
		})
	}
}
