//go:build cgo

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// The hostile corpus: requests an attacker (or a confused client) sends,
// each through the real HTTP handler of a verifier with a real SQLite
// store, the TPM simulator and the simulated signer. Every case names the
// answer it must get (status, error code, a reason), and the test checks
// for each that no token and no key left the verifier and what the audit
// log recorded. A case that is accepted fails the test.

// hostileCase is one request (or one short exchange) and what it must get.
type hostileCase struct {
	group string
	name  string
	// send makes the request(s); the last response is judged.
	send   func(t *testing.T, c *corpus) response
	status int
	code   string
	// reason is a substring ("|"-separated alternatives) one of the
	// reasons must contain; "" checks none.
	reason string
	// audit lists the outcomes of the audit records the case writes, in
	// order; empty: it writes none.
	audit []string
}

// corpus is the state the cases share: one verifier, a key the release
// cases ask for, and tokens made before the cases run.
type corpus struct {
	f     *fixture
	good  string // a token the sim-key's release policy accepts
	other string // another good token
	aud   string // a good token for another audience
}

func (c *corpus) evidence(t *testing.T, o testguest.Options) []byte {
	return evidenceFor(t, c.f.nonce(), o)
}

// envelope makes evidence for a fresh nonce and lets edit change the
// envelope before it is encoded.
func (c *corpus) envelope(t *testing.T, o testguest.Options, edit func(*evidence.Envelope)) []byte {
	t.Helper()
	env, err := guest.Evidence(c.f.nonce(), o)
	if err != nil {
		t.Fatal(err)
	}
	edit(env)
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// raw sends a request with exactly the given headers (nothing added).
func (c *corpus) raw(t *testing.T, method, path string, hdr map[string]string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, c.f.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b, header: resp.Header}
}

func TestHostileCorpus(t *testing.T) {
	// Every case comes from one client: lift the per-client limit on audit
	// rows of failed unauthenticated attempts (TestFailureAuditPerClient
	// tests it), so that each case's own row can be checked.
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.FailureAuditBurst = 1 << 20 }})
	f.createKey("sim-key", releasePolicy(t, "sim_development.rego"))
	f.createKey("default-key", "") // the default policy: hardware only
	c := &corpus{f: f, good: f.token(testguest.Options{}, ""), other: f.token(testguest.Options{}, ""),
		aud: f.token(testguest.Options{}, "?audience=someone-else")}
	cases := hostileCases()
	if len(cases) < 100 {
		t.Fatalf("the corpus has %d cases, want at least 100", len(cases))
	}
	seen := map[string]bool{}
	counts := map[string]int{}
	failed := map[string]int{}
	ctx := context.Background()
	start, err := f.srv.Store.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		id := tc.group + "/" + tc.name
		if seen[id] {
			t.Fatalf("duplicate case %s", id)
		}
		seen[id] = true
		counts[tc.group]++
		ok := t.Run(id, func(t *testing.T) {
			before, err := f.srv.Store.AuditHead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := tc.send(t, c)
			checkRefused(t, tc, r)
			recs, err := f.srv.Store.AuditRecords(ctx, before.LastID, 100)
			if err != nil {
				t.Fatal(err)
			}
			checkAudit(t, tc, recs)
		})
		if !ok {
			failed[tc.group]++
		}
	}
	// Nothing in the whole run was granted: no token, no key.
	recs, err := f.srv.Store.AuditRecords(ctx, start.LastID, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Outcome == "granted" || r.Outcome == "affirming" || r.Outcome == "warning" {
			t.Errorf("audit record #%d: %s %s was accepted", r.ID, r.Event, r.Outcome)
		}
	}
	summary := corpusSummary(counts, failed)
	t.Log("\n" + summary)
	if p := os.Getenv("CONFIDANT_CORPUS_SUMMARY"); p != "" {
		if err := os.WriteFile(p, []byte(summary), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// checkRefused: the answer is the expected refusal, a JSON error body that
// carries no token and no key.
func checkRefused(t *testing.T, tc hostileCase, r response) {
	t.Helper()
	if r.status == http.StatusOK {
		t.Fatalf("ACCEPTED: %v", r)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatalf("error body is not a JSON object: %v", r)
	}
	for _, k := range []string{"token", "jwe", "key"} {
		if _, ok := fields[k]; ok {
			t.Fatalf("a refusal carries %q: %v", k, r)
		}
	}
	e := r.errBody(t)
	if r.status != tc.status || e.Error != tc.code {
		t.Fatalf("got %v, want %d %s", r, tc.status, tc.code)
	}
	if tc.reason != "" && !hasReason(e.Reasons, tc.reason) {
		t.Fatalf("reasons %q lack %q", e.Reasons, tc.reason)
	}
}

// checkAudit: the case wrote the audit record it should (or none), and no
// record holds a control character.
func checkAudit(t *testing.T, tc hostileCase, recs []store.AuditRecord) {
	t.Helper()
	for _, r := range recs {
		b, _ := json.Marshal(r)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if s := controlIn(m); s != "" {
			t.Errorf("audit record #%d holds a control character: %q", r.ID, s)
		}
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Outcome)
		if len(r.Reasons) == 0 {
			t.Errorf("audit record #%d (%s) has no reason", r.ID, r.Outcome)
		}
	}
	if !slices.Equal(got, tc.audit) {
		t.Fatalf("audit outcomes %q, want %q: %+v", got, tc.audit, recs)
	}
}

// controlIn returns the first string in v holding a control character.
func controlIn(v any) string {
	switch v := v.(type) {
	case string:
		if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == '\u202e' }) {
			return v
		}
	case []any:
		for _, e := range v {
			if s := controlIn(e); s != "" {
				return s
			}
		}
	case map[string]any:
		for _, e := range v {
			if s := controlIn(e); s != "" {
				return s
			}
		}
	}
	return ""
}

func corpusSummary(counts, failed map[string]int) string {
	groups := make([]string, 0, len(counts))
	total, fails := 0, 0
	for g := range counts {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	var b bytes.Buffer
	fmt.Fprintf(&b, "hostile corpus (verifier, through the HTTP handler):\n")
	for _, g := range groups {
		fmt.Fprintf(&b, "  %-22s %3d cases, %3d refused as expected\n", g, counts[g], counts[g]-failed[g])
		total += counts[g]
		fails += failed[g]
	}
	fmt.Fprintf(&b, "  %-22s %3d cases, %3d refused as expected, %d accepted or refused wrongly\n", "total", total, total-fails, fails)
	return b.String()
}
