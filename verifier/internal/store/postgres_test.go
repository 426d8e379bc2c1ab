package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
)

func openTestPostgres(t *testing.T, dsn string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgres runs the backend-independent contract on PostgreSQL, each
// subtest in its own schema.
func TestPostgres(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return openTestPostgres(t, pgtest.DSN(t)) })
}

func TestAuditTamperPostgres(t *testing.T) {
	testAuditTamper(t, func(t *testing.T) (Store, func(string)) {
		dsn := pgtest.DSN(t)
		return openTestPostgres(t, dsn), func(stmt string) { pgtest.Exec(t, dsn, stmt) }
	})
}

func TestRedeemWithAuditAtomicPostgres(t *testing.T) {
	testRedeemWithAuditAtomic(t, func(t *testing.T) (Store, func(string)) {
		dsn := pgtest.DSN(t)
		return openTestPostgres(t, dsn), func(stmt string) { pgtest.Exec(t, dsn, stmt) }
	})
}

// TestPostgresPoolSize: without pool_max_conns the pool holds
// DefaultPostgresMaxConns connections (not pgx's max(4, NumCPU)); the URL
// parameter wins.
func TestPostgresPoolSize(t *testing.T) {
	dsn := pgtest.DSN(t)
	tests := map[string]struct {
		url  string
		want int32
	}{
		"default":  {url: dsn, want: DefaultPostgresMaxConns()},
		"from URL": {url: dsn + "&pool_max_conns=3", want: 3},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := openTestPostgres(t, tt.url)
			if got := s.pool.Config().MaxConns; got != tt.want {
				t.Fatalf("MaxConns %d, want %d", got, tt.want)
			}
		})
	}
}

// TestPostgresReplicasAttest: two replicas redeem the same nonces with
// their audit records at once, from many goroutines, so that their writer
// batches interleave. Each nonce is won exactly once; every other attempt
// is ErrNonceReused, never a deadlock or another store error; the audit
// chain holds one record per won nonce.
func TestPostgresReplicasAttest(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	a, b := openTestPostgres(t, dsn), openTestPostgres(t, dsn)
	const nonces = 128
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins = map[int]int{}
	)
	for i := range nonces {
		for _, s := range []*Postgres{a, b, a, b} {
			wg.Go(func() {
				_, err := s.RedeemNonceWithAudit(ctx, fmt.Appendf(nil, "n%d", i), t0.Add(time.Hour), AuditRecord{Time: t0, Event: "attest"})
				switch {
				case err == nil:
					mu.Lock()
					wins[i]++
					mu.Unlock()
				case !errors.Is(err, ErrNonceReused):
					t.Errorf("nonce %d: %v", i, err)
				}
			})
		}
	}
	wg.Wait()
	for i := range nonces {
		if wins[i] != 1 {
			t.Errorf("nonce %d won %d times", i, wins[i])
		}
	}
	if rep, err := VerifyAudit(ctx, a); err != nil || !rep.OK || rep.Entries != nonces {
		t.Fatalf("VerifyAudit: %+v, %v; want %d entries", rep, err, nonces)
	}
}

// TestPostgresReplicas opens the same schema twice, as two verifier
// processes would, at the same time.
func TestPostgresReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	var (
		wg     sync.WaitGroup
		stores [4]*Postgres
		errs   [4]error
	)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	a, b := stores[0], stores[1]
	if err := a.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); !errors.Is(err, ErrNonceReused) {
		t.Fatalf("redemption on the second replica: got %v, want ErrNonceReused", err)
	}
	// Concurrent first use of a secret: every replica gets the same value.
	vals := make([][]byte, len(stores))
	for i, s := range stores {
		wg.Go(func() {
			vals[i], errs[i] = s.Secret(ctx, "mac", func() ([]byte, error) { return []byte{byte('a' + i)}, nil })
		})
	}
	wg.Wait()
	for i := range stores {
		if errs[i] != nil || string(vals[i]) != string(vals[0]) {
			t.Fatalf("secrets: %q (%v)", vals, errs)
		}
	}
	// Concurrent rotations: one wins, one current key remains.
	for i, s := range stores {
		wg.Go(func() {
			_, errs[i] = s.RotateSigningKey(ctx, testKey(string(rune('a'+i)), t0), t0.Add(time.Hour), t0.Add(time.Hour))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := b.SigningKeys(ctx)
	current := 0
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			current++
		}
	}
	if err != nil || current != 1 {
		t.Fatalf("%d current keys after concurrent rotation (%v)", current, err)
	}
}

// TestPostgresUnreachable cuts the connection to the database: operations
// fail with ErrUnavailable, nothing is half-written, and the store works
// again once the database is back.
func TestPostgresUnreachable(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	proxy := pgtest.NewProxy(t, pgtest.Host(t, dsn))
	s := openTestPostgres(t, pgtest.WithHost(t, dsn, proxy.Addr())+"&connect_timeout=2")
	k := ReleaseKey{Name: "k", Origin: OriginPlatform, Policy: []byte("p"), PolicySHA256: "a", CreatedAt: t0}
	if err := s.CreateReleaseKey(ctx, k, ReleaseKeyVersion{Version: 1, Sealed: []byte("s"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ping while cut: %v", err)
	}
	if _, err := s.RotateReleaseKey(ctx, "k", t0, func(v int) (ReleaseKeyVersion, error) {
		return ReleaseKeyVersion{Version: v, Sealed: []byte("s"), CreatedAt: t0}, nil
	}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("rotate while cut: %v", err)
	}
	if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "x"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("audit while cut: %v", err)
	}
	proxy.Restore()
	// The pool reconnects on its own.
	var err error
	for range 50 {
		if err = s.Ping(ctx); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("store did not recover: %v", err)
	}
	info, err := s.ReleaseKeyInfo(ctx, "k")
	if err != nil || len(info.Versions) != 1 {
		t.Fatalf("after the outage: %+v, %v", info, err)
	}
	if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.Entries != 0 {
		t.Fatalf("audit after the outage: %+v, %v", rep, err)
	}
}

// TestPostgresRequired checks the switch make test relies on: with
// CONFIDANT_TEST_REQUIRE_POSTGRES=1 and no DSN the PostgreSQL tests fail
// instead of skipping.
func TestPostgresRequired(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary again")
	}
	if os.Getenv("PGTEST_CHILD") == "1" {
		pgtest.BaseDSN(t)
		return
	}
	run := func(env ...string) error {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresRequired$", "-test.count=1")
		cmd.Env = append(filterEnv(os.Environ(), pgtest.EnvDSN, pgtest.EnvRequire), append(env, "PGTEST_CHILD=1")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if !strings.Contains(string(out), "SKIP") && !strings.Contains(string(out), "PASS") {
			return fmt.Errorf("unexpected output %s", out)
		}
		return nil
	}
	if err := run(); err != nil {
		t.Fatalf("without the DSN and not required: want skip, got %v", err)
	}
	if err := run(pgtest.EnvRequire + "=1"); err == nil {
		t.Fatal("without the DSN but required: the test passed")
	}
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
	for _, e := range env {
		keep := true
		for _, d := range drop {
			if strings.HasPrefix(e, d+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}
