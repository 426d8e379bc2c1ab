//go:build cgo

package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/testenv"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// startConfig is a serve configuration on a free loopback port with the
// development policy, the test guest's reference values and the simulated
// root, storing in storeURL ("": SQLite in stateDir).
func startConfig(t *testing.T, stateDir, storeURL string) Config {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := DefaultConfig()
	cfg.Listen, cfg.StateDir, cfg.Store = addr, stateDir, storeURL
	cfg.Policies = []string{simDevPolicy(t)}
	cfg.ReferenceValues = filepath.Join(dir, "reference.json")
	writeJSONFile(t, cfg.ReferenceValues, reference())
	cfg.SimRoot = filepath.Join(dir, "sim-root.pem")
	if err := os.WriteFile(cfg.SimRoot, guest.Signer.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Issuer, cfg.Audience, cfg.AdminListen = "http://"+addr, "test-audience", "none"
	return cfg
}

// get answers GET url, or status 0 when nothing answers.
func get(url string) (int, api.ErrorBody) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, api.ErrorBody{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.ErrorBody
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

// waitStatus polls GET url until it answers want.
func waitStatus(t *testing.T, url string, want int) api.ErrorBody {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, body := get(url)
		if got == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %+v, want %d", url, got, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInBackground runs Start and then Run as serve does, and returns
// the channel Start's error arrives on.
func startInBackground(t *testing.T, cfg Config) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s, err := Start(ctx, cfg, nil, Options{})
		started <- err
		if err != nil {
			return
		}
		defer s.Close()
		if err := s.Run(ctx, nil); err != nil && ctx.Err() == nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return started
}

// checkNotReady: alive, not ready with reason, and the API answers 503
// not_ready instead of nothing.
func checkNotReady(t *testing.T, cfg Config, reason string) {
	t.Helper()
	base := "http://" + cfg.Listen
	waitStatus(t, base+"/healthz", http.StatusOK)
	if e := waitStatus(t, base+"/readyz", http.StatusServiceUnavailable); e.Error != api.CodeNotReady || !hasReason(e.Reasons, reason) {
		t.Fatalf("readyz while waiting: %+v, want %s with %q", e, api.CodeNotReady, reason)
	}
	resp, err := http.Post(base+"/v1/challenge", "application/json", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("challenge while waiting: %d, want 503 with Retry-After", resp.StatusCode)
	}
}

// checkServes: Start returned, and the verifier serves a whole attestation.
func checkServes(t *testing.T, cfg Config, started <-chan error) {
	t.Helper()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("Start did not return after the store came back")
	}
	base := "http://" + cfg.Listen
	waitStatus(t, base+"/readyz", http.StatusOK)
	resp, err := http.Post(base+"/v1/challenge", "application/json", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	var c api.ChallengeResponse
	err = json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(c.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(base+"/v1/attest", "application/json", strings.NewReader(string(evidenceFor(t, nonce, testguest.Options{}))))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"token"`) {
		t.Fatalf("attest after the store came back: %d %s", resp.StatusCode, b)
	}
}

// TestStartWaitsForPostgres: PostgreSQL is down when the verifier starts.
// It does not exit: it serves not-ready, retries with backoff, and serves
// for real once the database is up.
func TestStartWaitsForPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	proxy := pgtest.NewProxy(t, pgtest.Host(t, dsn))
	proxy.Cut()
	cfg := startConfig(t, t.TempDir(), pgtest.WithHost(t, dsn, proxy.Addr())+"&connect_timeout=1")
	started := startInBackground(t, cfg)
	checkNotReady(t, cfg, "store unreachable")
	select {
	case err := <-started:
		t.Fatalf("Start returned while PostgreSQL was down: %v", err)
	default:
	}
	proxy.Restore()
	checkServes(t, cfg, started)
}

// TestStartWaitsForWritableSQLite: the SQLite store's file system is
// read-only when the verifier starts (an existing store). It serves
// not-ready saying so, and starts once the file system is writable again,
// without a restart.
func TestStartWaitsForWritableSQLite(t *testing.T) {
	dir := testenv.Tmpfs(t, "16m")
	state := filepath.Join(dir, "state")
	cfg := startConfig(t, state, "")
	// A store made and closed, as by an earlier run.
	s, err := New(context.Background(), cfg, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting read-only: %v", err)
	}
	started := startInBackground(t, cfg)
	checkNotReady(t, cfg, "read-only")
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatalf("remounting read-write: %v", err)
	}
	checkServes(t, cfg, started)
}
