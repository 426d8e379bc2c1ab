//go:build cgo

package server

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// Key names that try to forge an audit row or drive the reader's terminal.
var injectedNames = map[string]string{
	"forged row":  "x\n2026-12-07T17:00:00Z attest: affirming sub=sev-snp:forged",
	"OSC title":   "\x1b]0;pwned\x07",
	"C1 and bidi": "k\u009b2J\u202e",
	"long":        strings.Repeat("\x1b[2J", 100),
}

// auditPrintable fails when any text of rec holds a byte outside printable
// ASCII (a newline, ESC, a C1 control, any raw non-ASCII rune).
func auditPrintable(t *testing.T, rec store.AuditRecord) {
	t.Helper()
	for _, s := range append([]string{rec.Event, rec.Outcome, rec.TEE, rec.Subject, rec.TokenID, rec.KeyName,
		rec.PolicyID, rec.PolicySHA256, rec.Remote}, rec.Reasons...) {
		if !termsafe.Safe(s) {
			t.Errorf("audit record %d holds raw text %q", rec.ID, s)
		}
	}
}

// findAudit returns the records of event whose key name is name.
func (f *fixture) findAudit(t *testing.T, event, name string) []store.AuditRecord {
	t.Helper()
	recs, err := f.srv.Store.AuditRecords(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AuditRecord
	for _, r := range recs {
		auditPrintable(t, r)
		if r.Event == event && r.KeyName == name {
			out = append(out, r)
		}
	}
	return out
}

// TestReleaseNameInjection: a release request, with a valid token, for a
// key name that carries a newline or an escape sequence is refused, and
// its audit record holds the name escaped and bounded, marked invalid.
func TestReleaseNameInjection(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.createKey("os-disk", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	for name, bad := range injectedNames {
		t.Run(name, func(t *testing.T) {
			// Escaped as Go escapes a path, so that the handler sees the
			// decoded name (chi reads a non-canonical escaping raw).
			r := f.releaseReq((&url.URL{Path: bad}).EscapedPath(), tok, nil)
			if r.status != http.StatusNotFound || r.errBody(t).Error != api.CodeKeyUnknown {
				t.Fatalf("release of %q: %v, want 404 %s", bad, r, api.CodeKeyUnknown)
			}
			if strings.Contains(string(r.body), "jwe") {
				t.Fatalf("a key left: %s", r.body)
			}
			want := termsafe.Clip(bad, 256)
			recs := f.findAudit(t, "release", want)
			if len(recs) != 1 {
				t.Fatalf("%d release records with key name %q", len(recs), want)
			}
			rec := recs[0]
			if rec.Outcome != api.CodeKeyUnknown || rec.Subject == "" || !slices.Contains(rec.Reasons, "invalid key name (recorded escaped)") {
				t.Fatalf("audit record %+v", rec)
			}
			if len(rec.KeyName) > 256 || (len(bad) > 64 && !strings.HasSuffix(rec.KeyName, termsafe.Marker)) {
				t.Fatalf("key name recorded unbounded: %d bytes %q", len(rec.KeyName), rec.KeyName)
			}
		})
	}
}

// TestAdminInvalidKeyName: an admin-created key with an invalid name is
// refused with a clear error, and the audit record of the refusal holds
// the name escaped.
func TestAdminInvalidKeyName(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ac := f.adminClient()
	ctx := context.Background()
	for name, bad := range injectedNames {
		t.Run(name, func(t *testing.T) {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: bad})
			if adminCode(err) != api.CodeMalformed {
				t.Fatalf("create %q: %v, want %s", bad, err, api.CodeMalformed)
			}
			msg := err.Error()
			if !strings.Contains(msg, `invalid key name "`+termsafe.Clip(bad, 160)+`": want 1-128 of [A-Za-z0-9._-]`) {
				t.Fatalf("unclear error: %s", msg)
			}
			if !termsafe.Safe(msg) {
				t.Fatalf("the error carries raw text: %q", msg)
			}
			recs := f.findAudit(t, "admin.key.create", termsafe.Clip(bad, 256))
			if len(recs) != 1 || recs[0].Outcome != api.CodeMalformed {
				t.Fatalf("audit records of the refused create: %+v", recs)
			}
			// Every other operation on the name is refused the same way.
			if _, err := ac.GetKey(ctx, bad); adminCode(err) != api.CodeMalformed {
				t.Fatalf("show %q: %v", bad, err)
			}
			if _, err := ac.DeleteKey(ctx, bad, 0); adminCode(err) != api.CodeMalformed {
				t.Fatalf("delete %q: %v", bad, err)
			}
		})
	}
	if keys, err := ac.ListKeys(ctx); err != nil || len(keys.Keys) != 0 {
		t.Fatalf("keys after refused creates: %+v, %v", keys, err)
	}
}
