//go:build cgo

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// pgReplicas starts two verifier instances, each with its own pgx pool,
// sharing one PostgreSQL schema and one KEK file (as replicas behind a
// load balancer do).
func pgReplicas(t *testing.T, dsn string) (a, b *fixture) {
	t.Helper()
	kek := filepath.Join(t.TempDir(), "shared.kek")
	withPG := func(c *Config) { c.Store, c.KEKFile = dsn, kek }
	a = newFixture(t, fixtureOpts{config: withPG})
	// Both serve under one issuer name, as replicas do.
	b = newFixture(t, fixtureOpts{config: func(c *Config) { withPG(c); c.Issuer = a.cfg.Issuer }})
	return a, b
}

// TestPostgresReplicas: a nonce issued by one replica is redeemed once by
// the other and never twice; a key rotated through one is released by the
// other; both publish the same JWKS.
func TestPostgresReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := pgReplicas(t, dsn)
	ctx := context.Background()

	if ja, jb := a.do(http.MethodGet, "/v1/jwks", nil), b.do(http.MethodGet, "/v1/jwks", nil); ja.status != 200 || !bytes.Equal(ja.body, jb.body) {
		t.Fatalf("JWKS differ:\n%s\n%s", ja.body, jb.body)
	}

	body := evidenceFor(t, a.nonce(), testguest.Options{})
	if r := b.attest(body, ""); r.status != http.StatusOK {
		t.Fatalf("replica b redeeming a's nonce: %v", r)
	}
	for _, f := range []*fixture{a, b} {
		if r := f.attest(body, ""); r.status != http.StatusUnauthorized || r.errBody(t).Error != api.CodeNonceReused {
			t.Fatalf("second redemption: %v", r)
		}
	}

	// A key created and rotated through a's admin API is released by b,
	// each version as stored.
	acA := a.adminClient()
	v1 := a.createKey("os-disk", releasePolicy(t, "sim_development.rego"))
	rot, err := acA.RotateKey(ctx, "os-disk", adminclient.RotateKeyRequest{ReturnKey: true})
	if err != nil || rot.Version != 2 {
		t.Fatalf("rotate on a: %+v, %v", rot, err)
	}
	v2, _ := adminapi.DecodeKey(rot.KeyMaterial)
	tok := a.token(testguest.Options{}, "")
	if got := tpmUnwrap(t, decodeRelease(t, b.releaseReq("os-disk", tok, nil)).JWE); !bytes.Equal(got, v2) {
		t.Fatal("replica b released another key than a's rotation made")
	}
	if got := tpmUnwrap(t, decodeRelease(t, b.releaseReq("os-disk", tok, []byte(`{"version":1}`))).JWE); !bytes.Equal(got, v1) {
		t.Fatal("replica b released another version 1")
	}

	// A signing key rotated on a is published by b after its refresh.
	if _, err := a.srv.Keys.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if ja, jb := a.do(http.MethodGet, "/v1/jwks", nil), b.do(http.MethodGet, "/v1/jwks", nil); !bytes.Equal(ja.body, jb.body) {
		t.Fatalf("JWKS differ after rotation:\n%s\n%s", ja.body, jb.body)
	}
	// One audit chain for both replicas.
	rep, err := b.adminClient().VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Entries < 5 {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

// TestPostgresConcurrentNonce races the two replicas for one nonce.
func TestPostgresConcurrentNonce(t *testing.T) {
	a, b := pgReplicas(t, pgtest.DSN(t))
	for range 3 {
		body := evidenceFor(t, a.nonce(), testguest.Options{})
		results := make(chan response, 4)
		for _, f := range []*fixture{a, b, a, b} {
			go func() { results <- f.attest(body, "") }()
		}
		ok := 0
		for range 4 {
			r := <-results
			switch {
			case r.status == http.StatusOK:
				ok++
			case r.status == http.StatusUnauthorized && r.errBody(t).Error == api.CodeNonceReused:
			default:
				t.Errorf("unexpected answer %v", r)
			}
		}
		if ok != 1 {
			t.Fatalf("%d redemptions of one nonce succeeded", ok)
		}
	}
}

// TestPostgresOutage cuts the verifier's connection to PostgreSQL (a TCP
// proxy in between): requests that need the store answer 503
// store_unavailable, nothing is half-written, and the verifier recovers by
// itself once the database is reachable again.
func TestPostgresOutage(t *testing.T) {
	dsn := pgtest.DSN(t)
	proxy := pgtest.NewProxy(t, pgtest.Host(t, dsn))
	f := newFixture(t, fixtureOpts{config: func(c *Config) {
		c.Store = pgtest.WithHost(t, dsn, proxy.Addr()) + "&connect_timeout=2"
	}})
	ctx := context.Background()
	ac := f.adminClient()
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	body := evidenceFor(t, f.nonce(), testguest.Options{})
	before, _ := f.srv.Store.AuditHead(ctx)

	proxy.Cut()
	unavailable := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeStoreUnavailable || len(r.errBody(t).Reasons) == 0 {
			t.Fatalf("%s while PostgreSQL is cut: %v", what, r)
		}
	}
	unavailable("attest", f.attest(body, ""))
	unavailable("release", f.releaseReq("k", tok, nil))
	if _, err := ac.RotateKey(ctx, "k", adminclient.RotateKeyRequest{}); adminCode(err) != api.CodeStoreUnavailable {
		t.Fatalf("rotate while cut: %v", err)
	}
	if r := f.do(http.MethodGet, "/readyz", nil); r.status != http.StatusServiceUnavailable || !hasReason(r.errBody(t).Reasons, "store unreachable") {
		t.Fatalf("readyz while cut: %v", r)
	}
	// Issuing a challenge needs no store.
	f.nonce()

	proxy.Restore()
	var r response
	for range 50 {
		if r = f.do(http.MethodGet, "/readyz", nil); r.status == http.StatusOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("not ready after the database returned: %v", r)
	}
	// Nothing was half-written: no version was added, no audit record.
	info, err := ac.GetKey(ctx, "k")
	if err != nil || len(info.Versions) != 1 {
		t.Fatalf("key after the outage: %+v, %v", info, err)
	}
	after, _ := f.srv.Store.AuditHead(ctx)
	if after.LastID != before.LastID {
		t.Fatalf("audit records written during the outage: %d → %d", before.LastID, after.LastID)
	}
	// The nonce of the failed attempt was not spent (its redemption failed
	// with the store); everything works again.
	if r := f.attest(body, ""); r.status != http.StatusOK {
		t.Fatalf("attest after the outage: %v", r)
	}
	if r := f.releaseReq("k", tok, nil); r.status != http.StatusOK {
		t.Fatalf("release after the outage: %v", r)
	}
	if _, err := ac.RotateKey(ctx, "k", adminclient.RotateKeyRequest{}); err != nil {
		t.Fatalf("rotate after the outage: %v", err)
	}
	if rep, err := store.VerifyAudit(ctx, f.srv.Store); err != nil || !rep.OK {
		t.Fatalf("audit chain after the outage: %+v, %v", rep, err)
	}
}

// TestPostgresOutageUnderLoad: PostgreSQL goes away in the middle of a load
// of attestations and releases and comes back. While it is away every
// request that needs it answers 503 store_unavailable (never a 500, never a
// token or a key); afterwards the same process serves again; every token
// handed out has its audit record, and the audit chain is whole.
func TestPostgresOutageUnderLoad(t *testing.T) {
	dsn := pgtest.DSN(t)
	proxy := pgtest.NewProxy(t, pgtest.Host(t, dsn))
	f := newFixture(t, fixtureOpts{config: func(c *Config) {
		c.Store = pgtest.WithHost(t, dsn, proxy.Addr()) + "&connect_timeout=2"
	}})
	ctx := context.Background()
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	// The evidence is made before the load (the TPM simulator is one): a
	// first part for the load before and during the outage, a second
	// handed to the workers only once the database is back, so that the
	// load goes on after it however fast the outage's 503s came.
	const flows, after = 200, 48
	bodies := make(chan []byte, flows+after)
	for range flows {
		bodies <- evidenceFor(t, f.nonce(), testguest.Options{})
	}
	later := make([][]byte, after)
	for i := range later {
		later[i] = evidenceFor(t, f.nonce(), testguest.Options{})
	}

	var (
		mu              sync.Mutex
		issued          []string // jti of every token handed out
		ok, down, other int
		afterRestore    int
		restored        bool
	)
	code := func(r response) string {
		var e api.ErrorBody
		_ = json.Unmarshal(r.body, &e)
		return e.Error
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range bodies {
				r := f.attest(body, "")
				var rel response
				if r.status == http.StatusOK {
					var a api.AttestResponse
					_ = json.Unmarshal(r.body, &a)
					mu.Lock()
					issued = append(issued, claimsOf(t, a.Token)["jti"].(string))
					mu.Unlock()
					rel = f.releaseReq("k", a.Token, nil)
				}
				mu.Lock()
				for _, x := range []response{r, rel} {
					switch {
					case x.status == 0:
					case x.status == http.StatusOK:
						ok++
						if restored {
							afterRestore++
						}
					case x.status == http.StatusServiceUnavailable && code(x) == api.CodeStoreUnavailable:
						down++
					default:
						other++
						t.Errorf("during the outage: %v", x)
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // under way
	proxy.Cut()
	mu.Lock()
	before := ok
	mu.Unlock()
	time.Sleep(time.Second)
	proxy.Restore()
	for i := 0; f.do(http.MethodGet, "/readyz", nil).status != http.StatusOK; i++ {
		if i == 100 {
			t.Fatal("not ready 10 s after the database returned")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	restored = true
	mu.Unlock()
	for _, b := range later {
		bodies <- b
	}
	close(bodies)
	wg.Wait()
	t.Logf("%d flows: %d answers 200 (%d before the cut, %d after the database returned), %d answers 503 store_unavailable, %d others",
		flows+after, ok, before, afterRestore, down, other)
	if before == 0 || down == 0 || afterRestore == 0 {
		t.Fatalf("the outage was not seen under load (%d answers 503) or the verifier did not recover (%d successes after)", down, afterRestore)
	}
	recs, err := f.srv.Store.AuditRecords(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]bool{}
	for _, r := range recs {
		audited[r.TokenID] = true
	}
	for _, jti := range issued {
		if !audited[jti] {
			t.Errorf("token %s was handed out without its audit record", jti)
		}
	}
	if rep, err := store.VerifyAudit(ctx, f.srv.Store); err != nil || !rep.OK {
		t.Fatalf("audit chain after the outage: %+v, %v", rep, err)
	}
}
