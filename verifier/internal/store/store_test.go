package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func openTestSQLite(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "verifier.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSQLite runs the backend-independent contract on SQLite. A PostgreSQL
// backend runs the same suite.
func TestSQLite(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return openTestSQLite(t) })
}

func testStore(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	t.Run("nonce single use", func(t *testing.T) {
		s := open(t)
		if err := s.RedeemNonce(ctx, []byte("n1"), t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.RedeemNonce(ctx, []byte("n1"), t0.Add(time.Minute)); !errors.Is(err, ErrNonceReused) {
			t.Fatalf("second redemption: got %v, want ErrNonceReused", err)
		}
		if err := s.RedeemNonce(ctx, []byte("n2"), t0.Add(time.Minute)); err != nil {
			t.Fatalf("other nonce: %v", err)
		}
	})
	t.Run("nonce concurrent redemption", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() { errs <- s.RedeemNonce(ctx, []byte("race"), t0.Add(time.Minute)) })
		}
		wg.Wait()
		close(errs)
		ok := 0
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrNonceReused):
				t.Errorf("unexpected error %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d redemptions succeeded, want 1", ok)
		}
	})
	t.Run("nonce prune", func(t *testing.T) {
		s := open(t)
		_ = s.RedeemNonce(ctx, []byte("old"), t0)
		_ = s.RedeemNonce(ctx, []byte("new"), t0.Add(time.Hour))
		n, err := s.PruneNonces(ctx, t0.Add(time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("PruneNonces = %d, %v; want 1", n, err)
		}
		if err := s.RedeemNonce(ctx, []byte("new"), t0.Add(time.Hour)); !errors.Is(err, ErrNonceReused) {
			t.Fatalf("unexpired nonce was pruned: %v", err)
		}
	})
	t.Run("secret created once", func(t *testing.T) {
		s := open(t)
		calls := 0
		mk := func() ([]byte, error) { calls++; return fmt.Appendf(nil, "v%d", calls), nil }
		a, err := s.Secret(ctx, "k", mk)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Secret(ctx, "k", mk)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != "v1" || string(b) != "v1" || calls != 1 {
			t.Fatalf("got %q, %q after %d creations", a, b, calls)
		}
		if _, err := s.Secret(ctx, "bad", func() ([]byte, error) { return nil, errors.New("boom") }); err == nil {
			t.Fatal("creation error was not returned")
		}
	})
	t.Run("signing key rotation", func(t *testing.T) {
		s := open(t)
		k1 := testKey("k1", t0)
		rotated, err := s.RotateSigningKey(ctx, k1, t0, time.Time{})
		if err != nil || !rotated {
			t.Fatalf("bootstrap: %v, %v", rotated, err)
		}
		// Current key is fresh: no rotation.
		rotated, err = s.RotateSigningKey(ctx, testKey("k2", t0.Add(time.Hour)), t0, t0.Add(2*time.Hour))
		if err != nil || rotated {
			t.Fatalf("fresh key rotated: %v, %v", rotated, err)
		}
		rotated, err = s.RotateSigningKey(ctx, testKey("k2", t0.Add(time.Hour)), t0.Add(time.Hour), t0.Add(2*time.Hour))
		if err != nil || !rotated {
			t.Fatalf("rotation: %v, %v", rotated, err)
		}
		keys, err := s.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || keys[0].KID != "k2" || !keys[0].RetiredAt.IsZero() ||
			keys[1].KID != "k1" || !keys[1].RetiredAt.Equal(t0.Add(time.Hour)) || !keys[1].ExpiresAt.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("keys after rotation: %+v", keys)
		}
		n, err := s.PruneSigningKeys(ctx, t0.Add(3*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("PruneSigningKeys = %d, %v", n, err)
		}
		keys, _ = s.SigningKeys(ctx)
		if len(keys) != 1 || keys[0].KID != "k2" {
			t.Fatalf("after prune: %+v", keys)
		}
	})
	t.Run("failed rotation changes nothing", func(t *testing.T) {
		s := open(t)
		if _, err := s.RotateSigningKey(ctx, testKey("k1", t0), t0, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateSigningKey(ctx, testKey("k2", t0.Add(time.Hour)), t0.Add(2*time.Hour), t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// k1 exists (retired): rotating to it again must fail after the
		// current key would have been retired, and roll that back.
		_, err := s.RotateSigningKey(ctx, testKey("k1", t0.Add(3*time.Hour)), t0.Add(4*time.Hour), t0.Add(5*time.Hour))
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("got %v, want ErrConflict", err)
		}
		keys, _ := s.SigningKeys(ctx)
		if len(keys) != 2 || keys[0].KID != "k2" || !keys[0].RetiredAt.IsZero() {
			t.Fatalf("state changed by a failed rotation: %+v", keys)
		}
	})
	t.Run("documents", func(t *testing.T) {
		s := open(t)
		d := Document{Kind: DocPolicy, ID: "p", SHA256: "aa", Content: []byte("package p"), LoadedAt: t0}
		if err := s.RecordDocument(ctx, d); err != nil {
			t.Fatal(err)
		}
		d.LoadedAt = t0.Add(time.Hour)
		if err := s.RecordDocument(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordDocument(ctx, Document{Kind: DocPolicy, ID: "p", SHA256: "bb", Content: []byte("x"), LoadedAt: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		docs, err := s.Documents(ctx, DocPolicy)
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 2 || docs[0].SHA256 != "aa" || !docs[0].LoadedAt.Equal(t0.Add(time.Hour)) || string(docs[0].Content) != "package p" {
			t.Fatalf("documents: %+v", docs)
		}
		if other, _ := s.Documents(ctx, DocReferenceValues); len(other) != 0 {
			t.Fatalf("reference values: %+v", other)
		}
	})
	t.Run("audit", func(t *testing.T) {
		s := open(t)
		for i := range 3 {
			if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Event: "attest",
				Outcome: "affirming", Reasons: []string{fmt.Sprint(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := s.AuditRecords(ctx, 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].ID != 2 || recs[0].Reasons[0] != "1" || !recs[1].Time.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("audit records: %+v", recs)
		}
	})
	t.Run("ping", func(t *testing.T) {
		s := open(t)
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("ping after close: got %v, want ErrUnavailable", err)
		}
	})
}

func testKey(kid string, created time.Time) SigningKey {
	return SigningKey{KID: kid, Alg: "ES256", PublicJWK: []byte(`{}`), SealedPrivate: []byte("sealed"), CreatedAt: created}
}

func TestSharedFileAcrossInstances(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); !errors.Is(err, ErrNonceReused) {
		t.Fatalf("redemption on the second instance: got %v, want ErrNonceReused", err)
	}
	sa, _ := a.Secret(ctx, "mac", func() ([]byte, error) { return []byte("from-a"), nil })
	sb, _ := b.Secret(ctx, "mac", func() ([]byte, error) { return []byte("from-b"), nil })
	if string(sa) != "from-a" || string(sb) != "from-a" {
		t.Fatalf("secrets differ: %q %q", sa, sb)
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append(append([]migration(nil), migrations...), migration{version: len(migrations) + 1, stmts: []string{
		"CREATE TABLE half (x INTEGER)",
		"THIS IS NOT SQL",
	}})
	if err := migrate(ctx, s.db, bad); err == nil {
		t.Fatal("broken migration applied")
	}
	v, err := schemaVersion(ctx, s.db)
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'half'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("half-applied migration left table (n=%d, err=%v)", n, err)
	}
	s.Close()
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(ctx, path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		url     string
		wantErr error
	}{
		"sqlite":   {url: "sqlite:" + filepath.Join(t.TempDir(), "x.db")},
		"postgres": {url: "postgres://localhost/db", wantErr: ErrUnsupported},
		"unknown":  {url: "mysql:x", wantErr: ErrUnsupported},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, tt.url)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if s != nil {
				s.Close()
			}
		})
	}
	for _, bad := range []string{"nocolon", "sqlite:", "sqlite:/tmp/a?b"} {
		if s, err := Open(ctx, bad); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// TestCrashMidWrite kills a process in the middle of a write transaction
// (after the current signing key was retired, before the next one was
// committed) and checks that the database opens with the old state intact.
func TestCrashMidWrite(t *testing.T) {
	if path := os.Getenv("STORE_CRASH_HELPER_DB"); path != "" {
		crashHelper(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateSigningKey(ctx, testKey("k1", t0), t0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_HELPER_DB="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("helper did not crash as planned: %v\n%s", err, out)
	}

	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KID != "k1" || !keys[0].RetiredAt.IsZero() {
		t.Fatalf("half-written state after crash: %+v", keys)
	}
}

// crashHelper runs in the child process: it starts the same writes
// RotateSigningKey does and exits without committing or closing.
func crashHelper(path string) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		os.Exit(2)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		os.Exit(2)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE signing_keys SET retired_at = 1, expires_at = 2"); err != nil {
		os.Exit(2)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO signing_keys ("+signingKeyColumns+") VALUES ('k2', 'ES256', x'00', x'00', 5, NULL, NULL)"); err != nil {
		os.Exit(2)
	}
	os.Exit(3) // crash: no commit, no close
}
