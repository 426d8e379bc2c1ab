//go:build cgo

package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/secretscan"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// logBuffer is the fixture's log: the server's slog output, scanned for
// secrets when the test ends.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// secretFindings scans what the fixture's server logged and its audit
// export for the KEK, the keys the test registered (f.secrets) and any
// whole token or PEM private key. The audit export is skipped (and said
// so in the test log) when the store is down at the end of the test.
func (f *fixture) secretFindings() ([]secretscan.Finding, error) {
	if b, err := os.ReadFile(f.cfg.KEKFile); err == nil {
		if err := f.secrets.AddEncoded("KEK", b); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	found := f.secrets.Scan("verifier log", f.logs.Bytes())
	srv := httptest.NewServer(f.srv.AdminHandler)
	defer srv.Close()
	c, err := adminclient.NewClient(adminclient.ClientConfig{URL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		return nil, err
	}
	var export bytes.Buffer
	if _, err := c.ExportAudit(context.Background(), &export); err != nil {
		f.t.Logf("secret scan: no audit export (%v); scanned the log only", err)
		return found, nil
	}
	return append(found, f.secrets.Scan("audit export", export.Bytes())...), nil
}

// checkNoSecrets fails the test on any secret in the fixture's log or
// audit export.
func (f *fixture) checkNoSecrets() {
	f.t.Helper()
	found, err := f.secretFindings()
	if err != nil {
		f.t.Errorf("secret scan: %v", err)
	}
	for _, x := range found {
		f.t.Errorf("secret in what the verifier logged: %s", x)
	}
}

// TestSecretScanSeesTheServer proves the scan is wired: a token the server
// issued, written into its log, and a released key, written into its audit
// log, are found; the log and audit export of a plain attest and release
// are clean.
func TestSecretScanSeesTheServer(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	key := f.createKey("scan", releasePolicy(t, "sim_development.rego"))
	if err := f.secrets.Add("released key", key); err != nil {
		t.Fatal(err)
	}
	tok := f.token(testguest.Options{}, "")
	if r := f.releaseReq("scan", tok, nil); r.status != http.StatusOK {
		t.Fatalf("release: %v", r)
	}
	if found, err := f.secretFindings(); err != nil || len(found) != 0 {
		t.Fatalf("clean run: findings %v, %v", found, err)
	}
	f.srv.log.Info("planted", "token", tok)
	if _, err := f.srv.Store.AppendAudit(context.Background(), store.AuditRecord{Time: time.Now(), Event: "planted",
		Outcome: "ok", Reasons: []string{hex.EncodeToString(key)}}); err != nil {
		t.Fatal(err)
	}
	found, err := f.secretFindings()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, x := range found {
		kinds = append(kinds, x.Source+"/"+x.Secret)
	}
	got := strings.Join(kinds, " ")
	for _, want := range []string{"verifier log/whole token", "audit export/released key"} {
		if !strings.Contains(got, want) {
			t.Errorf("planted %s not found (findings: %s)", want, got)
		}
	}
	// The fixture's own end-of-test scan would fail on the plants.
	f.secrets = secretscan.New()
	f.logs.mu.Lock()
	f.logs.b.Reset()
	f.logs.mu.Unlock()
}
