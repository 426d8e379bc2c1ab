//go:build cgo

package vclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/agent/internal/vclient/vclienttest"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// The test binary's guest: one TPM simulator per process (so tests here
// never run in parallel), the AK and runtime key in it, and the simulated
// AMD secure processor.
var (
	signer     *sim.Signer
	attester   *tpm.Attester
	runtimeKey *tpm.DecryptKey
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	g, err := vclienttest.StartGuest("confidant-vclient-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	signer = g.Signer
	if attester, err = tpm.NewAttester(g.TPM); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer attester.Close()
	if runtimeKey, err = tpm.NewDecryptionKey(g.TPM); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer runtimeKey.Close()
	return m.Run()
}

// simProvider returns the simulated TEE behind a quote.Sim provider.
func simProvider(t *testing.T) *quote.Sim { return vclienttest.SimQuoter(t, signer) }

// fakeClock is a clock whose Sleep returns at once and moves it on.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// env is one verifier and a guest set up to attest to it.
type env struct {
	v        *vclienttest.Verifier
	srv      *httptest.Server
	clock    *fakeClock
	attempts []Attempt
	logs     bytes.Buffer
	secret   []byte
}

// newEnv starts a TLS test verifier releasing a fresh secret.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: newFakeClock(), secret: bytes.Repeat([]byte{0x5c}, 32)}
	v, err := vclienttest.NewVerifier(signer.RootCert(), e.secret)
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	e.srv = v.ServeTLS(t) // TLS handshake failures are expected in some tests
	return e
}

// client returns a client for the test verifier trusting its certificate.
func (e *env) client(t *testing.T, timeout time.Duration) *Client {
	t.Helper()
	u, _ := url.Parse(e.srv.URL)
	pool := e.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c, err := New(Config{URL: u, RootCAs: pool, Timeout: timeout, Audience: "test-audience", Log: e.logger()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// deps returns Deps for the guest with deterministic backoff (the full
// ceiling) on the fake clock.
func (e *env) deps(t *testing.T, c *Client) Deps {
	return Deps{
		Client:     c,
		Quoter:     simProvider(t),
		TPM:        attester,
		RuntimeKey: runtimeKey,
		EventLog:   func() ([]byte, error) { return vclienttest.EventLog(), nil },
		KeyName:    "os-disk",
		Retry:      Retry{Budget: time.Minute, MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: 8 * time.Second},
		Clock:      e.clock,
		Jitter:     func(ceil time.Duration) time.Duration { return ceil },
		Progress:   func(a Attempt) { e.attempts = append(e.attempts, a) },
		Log:        e.logger(),
	}
}

// stages lists the attempts as "stage#n" (with "!" for a failed one).
func (e *env) stages() []string {
	var out []string
	for _, a := range e.attempts {
		s := fmt.Sprintf("%s#%d", a.Stage, a.Number)
		if a.Err != nil {
			s += "!"
		}
		out = append(out, s)
	}
	return out
}

func checkErr(t *testing.T, err error, want ...error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("error %v does not match %v", err, w)
		}
	}
}
