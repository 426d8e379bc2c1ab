//go:build cgo

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// TestAttestSpendsTheChallengeNonce: the attest handler redeems a nonce in
// the transaction of its audit record, under the id that
// challenge.Service.Redeem records, so that the two agree on which nonces
// are spent.
func TestAttestSpendsTheChallengeNonce(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	sealer, err := seal.LoadOrCreate(f.cfg.KEKFile)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := challenge.LoadKey(ctx, f.srv.Store, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	chal, err := challenge.New(challenge.Config{Key: key, Store: f.srv.Store, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	n := f.nonce()
	if r := f.attest(evidenceFor(t, n, testguest.Options{}), ""); r.status != http.StatusOK {
		t.Fatalf("attest: %s", r)
	}
	if err := chal.Redeem(ctx, n); !errors.Is(err, challenge.ErrReused) {
		t.Fatalf("redeeming an attested nonce: got %v, want ErrReused", err)
	}
	n2 := f.nonce()
	if err := chal.Redeem(ctx, n2); err != nil {
		t.Fatal(err)
	}
	r := f.attest(evidenceFor(t, n2, testguest.Options{}), "")
	if r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
		t.Fatalf("attest with a redeemed nonce: %s", r)
	}
	// One record per attempt: the token, then the reuse (without a token).
	recs, err := f.srv.Store.AuditRecords(ctx, 0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit records %+v, %v", recs, err)
	}
	if recs[0].Outcome != "affirming" || recs[0].TokenID == "" || recs[1].Outcome != api.CodeNonceReused || recs[1].TokenID != "" {
		t.Fatalf("audit records %+v", recs)
	}
}

// TestQueueFull: with the queue full, an attest request is refused at once
// with 503 overloaded and Retry-After; once the queue has room, the same
// request succeeds. The request that fills the queue sends its headers and
// not its body, as a slow client would.
func TestQueueFull(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxQueue = 1 }})
	body := evidenceFor(t, f.nonce(), testguest.Options{})
	slow, err := net.Dial("tcp", f.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := fmt.Fprintf(slow, "POST /v1/attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", len(body)); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, f, "confidant_verifier_admission_queued", 1)

	r := f.attest(body, "")
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeOverloaded || r.header.Get("Retry-After") == "" {
		t.Fatalf("with the queue full: %s (Retry-After %q)", r, r.header.Get("Retry-After"))
	}
	slow.Close()
	waitGauge(t, f, "confidant_verifier_admission_queued", 0)
	if r := f.attest(body, ""); r.status != http.StatusOK {
		t.Fatalf("with room in the queue: %s", r)
	}
}

// waitGauge waits until the named gauge has the value want.
func waitGauge(t *testing.T, f *fixture, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := f.srv.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := -1.0
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) == 1 {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdmissionMetrics: the admission metrics are exported.
func TestAdmissionMetrics(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.token(testguest.Options{}, "")
	r := f.do(http.MethodGet, "/metrics", nil)
	for _, want := range []string{
		`confidant_verifier_admissions_total{result="admitted"} 1`,
		"confidant_verifier_admission_wait_seconds_count 1",
		"confidant_verifier_admission_queued 0",
		"confidant_verifier_admission_in_flight 0",
		`confidant_verifier_nonce_redemptions_total{result="ok"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
