package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.Entries != 0 {
			t.Fatalf("empty log: %+v, %v", rep, err)
		}
		for i := range 3 {
			if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Event: "release",
				Outcome: "granted", KeyName: "disk", KeyVersion: i + 1, Reasons: []string{fmt.Sprint(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := s.AuditRecords(ctx, 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].ID != 2 || recs[0].Reasons[0] != "1" || !recs[1].Time.Equal(t0.Add(2*time.Second)) ||
			recs[0].KeyName != "disk" || recs[0].KeyVersion != 2 {
			t.Fatalf("audit records: %+v", recs)
		}
		rep, err := VerifyAudit(ctx, s)
		if err != nil || !rep.OK || rep.Entries != 3 || rep.HeadID != 3 {
			t.Fatalf("VerifyAudit: %+v, %v", rep, err)
		}
		// Text the database cannot hold as is is stored cleaned, and the
		// chain still verifies.
		if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "attest", Subject: "a\x00b\xff",
			Reasons: []string{"\xfe"}}); err != nil {
			t.Fatal(err)
		}
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK {
			t.Fatalf("after odd text: %+v, %v", rep, err)
		}
	})
	t.Run("audit concurrent appends chain", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "attest", Outcome: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.Entries != 16 {
			t.Fatalf("VerifyAudit: %+v, %v", rep, err)
		}
	})
	t.Run("nonce redeemed with its audit record", func(t *testing.T) {
		s := open(t)
		exp := t0.Add(time.Minute)
		id, err := s.RedeemNonceWithAudit(ctx, []byte("n1"), exp, AuditRecord{Time: t0, Event: "attest", Outcome: "affirming", TokenID: "jti-1"})
		if err != nil || id != 1 {
			t.Fatalf("first redemption: id %d, %v", id, err)
		}
		if err := s.RedeemNonce(ctx, []byte("n1"), exp); !errors.Is(err, ErrNonceReused) {
			t.Fatalf("RedeemNonce after RedeemNonceWithAudit: got %v, want ErrNonceReused", err)
		}
		// A reused nonce, whichever way it was redeemed, writes no record.
		if err := s.RedeemNonce(ctx, []byte("n2"), exp); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"n1", "n2"} {
			if _, err := s.RedeemNonceWithAudit(ctx, []byte(n), exp, AuditRecord{Time: t0, Event: "attest", TokenID: "jti-x"}); !errors.Is(err, ErrNonceReused) {
				t.Fatalf("%s again: got %v, want ErrNonceReused", n, err)
			}
		}
		if _, err := s.RedeemNonceWithAudit(ctx, nil, exp, AuditRecord{Time: t0, Event: "attest"}); err == nil || errors.Is(err, ErrNonceReused) {
			t.Fatalf("empty nonce: got %v", err)
		}
		recs, err := s.AuditRecords(ctx, 0, 10)
		if err != nil || len(recs) != 1 || recs[0].TokenID != "jti-1" {
			t.Fatalf("audit records %+v, %v; want only jti-1", recs, err)
		}
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.HeadID != 1 {
			t.Fatalf("VerifyAudit: %+v, %v", rep, err)
		}
	})
	t.Run("nonce with audit concurrent", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, reused := 0, 0
		for range 16 {
			wg.Go(func() {
				_, err := s.RedeemNonceWithAudit(ctx, []byte("race"), t0.Add(time.Minute), AuditRecord{Time: t0, Event: "attest"})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrNonceReused):
					reused++
				default:
					t.Errorf("unexpected error %v", err)
				}
			})
		}
		// Distinct nonces and plain appends at the same time all succeed.
		for i := range 48 {
			wg.Go(func() {
				var err error
				if i%2 == 0 {
					_, err = s.RedeemNonceWithAudit(ctx, fmt.Appendf(nil, "n%d", i), t0.Add(time.Minute), AuditRecord{Time: t0, Event: "attest"})
				} else {
					_, err = s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "release"})
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won != 1 || reused != 15 {
			t.Fatalf("same nonce: %d won, %d reused; want 1 and 15", won, reused)
		}
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.Entries != 49 {
			t.Fatalf("VerifyAudit: %+v, %v; want 49 entries", rep, err)
		}
	})
	t.Run("release keys", func(t *testing.T) {
		s := open(t)
		k := ReleaseKey{Name: "disk", Origin: OriginPlatform, Policy: []byte("package p"), PolicySHA256: "aa", CreatedAt: t0}
		v1 := ReleaseKeyVersion{Version: 1, Sealed: []byte("s1"), KEKID: "kek", CreatedAt: t0}
		if err := s.CreateReleaseKey(ctx, k, v1); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateReleaseKey(ctx, k, v1); !errors.Is(err, ErrConflict) {
			t.Fatalf("second create: got %v, want ErrConflict", err)
		}
		if err := s.CreateReleaseKey(ctx, ReleaseKey{Name: "x", Origin: "other"}, v1); err == nil {
			t.Fatal("bad key accepted")
		}
		seal := func(v int) (ReleaseKeyVersion, error) {
			return ReleaseKeyVersion{Version: v, Sealed: fmt.Appendf(nil, "s%d", v), KEKID: "kek", CreatedAt: t0.Add(time.Hour)}, nil
		}
		for want := 2; want <= 3; want++ {
			v, err := s.RotateReleaseKey(ctx, "disk", t0.Add(time.Hour), seal)
			if err != nil || v != want {
				t.Fatalf("rotate: %d, %v; want %d", v, err, want)
			}
		}
		if _, err := s.RotateReleaseKey(ctx, "none", t0, seal); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rotate unknown: %v", err)
		}
		// A failing seal changes nothing.
		if _, err := s.RotateReleaseKey(ctx, "disk", t0, func(int) (ReleaseKeyVersion, error) {
			return ReleaseKeyVersion{}, errors.New("kms down")
		}); err == nil {
			t.Fatal("failed seal rotated")
		}
		_, latest, err := s.ReleaseKey(ctx, "disk", 0)
		if err != nil || latest.Version != 3 || string(latest.Sealed) != "s3" {
			t.Fatalf("latest: %+v, %v", latest, err)
		}
		got, v2, err := s.ReleaseKey(ctx, "disk", 2)
		if err != nil || v2.Version != 2 || string(v2.Sealed) != "s2" || got.Origin != OriginPlatform || string(got.Policy) != "package p" {
			t.Fatalf("version 2: %+v %+v, %v", got, v2, err)
		}
		if _, _, err := s.ReleaseKey(ctx, "disk", 9); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown version: %v", err)
		}
		if _, _, err := s.ReleaseKey(ctx, "none", 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
		if err := s.DeleteReleaseKey(ctx, "disk", 3); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteReleaseKey(ctx, "disk", 3); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting a deleted version: %v", err)
		}
		// Version numbers are never reused.
		if v, err := s.RotateReleaseKey(ctx, "disk", t0, seal); err != nil || v != 4 {
			t.Fatalf("rotate after delete: %d, %v", v, err)
		}
		if err := s.SetReleasePolicy(ctx, "disk", []byte("package q"), "bb", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetReleasePolicy(ctx, "none", []byte("package q"), "bb", t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("policy of unknown key: %v", err)
		}
		info, err := s.ReleaseKeyInfo(ctx, "disk")
		if err != nil || info.PolicySHA256 != "bb" || !info.UpdatedAt.Equal(t0.Add(2*time.Hour)) || len(info.Versions) != 3 ||
			info.Versions[0].Version != 1 || info.Versions[2].Version != 4 || info.Versions[1].Sealed != nil {
			t.Fatalf("info: %+v, %v", info, err)
		}
		if err := s.CreateReleaseKey(ctx, ReleaseKey{Name: "a-first", Origin: OriginCustomer, Policy: []byte("p"), PolicySHA256: "cc", CreatedAt: t0}, v1); err != nil {
			t.Fatal(err)
		}
		all, err := s.ReleaseKeys(ctx)
		if err != nil || len(all) != 2 || all[0].Name != "a-first" || len(all[0].Versions) != 1 || len(all[1].Versions) != 3 {
			t.Fatalf("list: %+v, %v", all, err)
		}
		for _, v := range []int{1, 2} {
			if err := s.DeleteReleaseKey(ctx, "disk", v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteReleaseKey(ctx, "disk", 4); !errors.Is(err, ErrConflict) {
			t.Fatalf("deleting the only version: %v", err)
		}
		if err := s.DeleteReleaseKey(ctx, "disk", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseKeyInfo(ctx, "disk"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted key: %v", err)
		}
		if err := s.DeleteReleaseKey(ctx, "disk", 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting a deleted key: %v", err)
		}
		// The name can be used again, from version 1.
		if err := s.CreateReleaseKey(ctx, k, v1); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("release key concurrent rotation", func(t *testing.T) {
		s := open(t)
		if err := s.CreateReleaseKey(ctx, ReleaseKey{Name: "k", Origin: OriginPlatform, Policy: []byte("p"), PolicySHA256: "a", CreatedAt: t0},
			ReleaseKeyVersion{Version: 1, Sealed: []byte("s"), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := s.RotateReleaseKey(ctx, "k", t0, func(v int) (ReleaseKeyVersion, error) {
					return ReleaseKeyVersion{Version: v, Sealed: []byte("s"), CreatedAt: t0}, nil
				}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		info, err := s.ReleaseKeyInfo(ctx, "k")
		if err != nil || len(info.Versions) != 9 || info.Versions[8].Version != 9 {
			t.Fatalf("after concurrent rotations: %+v, %v", info, err)
		}
	})
	t.Run("active documents", func(t *testing.T) {
		s := open(t)
		d := Document{Kind: DocPolicy, ID: "p", SHA256: "aa", Content: []byte("package p"), LoadedAt: t0}
		if err := s.ActivateDocument(ctx, PolicySlot("sim-sev-snp"), d); err != nil {
			t.Fatal(err)
		}
		d2 := Document{Kind: DocPolicy, ID: "p", SHA256: "bb", Content: []byte("package p2"), LoadedAt: t0.Add(time.Hour)}
		if err := s.ActivateDocument(ctx, PolicySlot("sim-sev-snp"), d2); err != nil {
			t.Fatal(err)
		}
		r := Document{Kind: DocReferenceValues, ID: "ref", SHA256: "cc", Content: []byte(`{"version":1}`), LoadedAt: t0}
		if err := s.ActivateDocument(ctx, ReferenceSlot, r); err != nil {
			t.Fatal(err)
		}
		act, err := s.ActiveDocuments(ctx)
		if err != nil || len(act) != 2 || act[PolicySlot("sim-sev-snp")].SHA256 != "bb" ||
			string(act[PolicySlot("sim-sev-snp")].Content) != "package p2" || act[ReferenceSlot].Kind != DocReferenceValues {
			t.Fatalf("active: %+v, %v", act, err)
		}
		if docs, _ := s.Documents(ctx, DocPolicy); len(docs) != 2 {
			t.Fatalf("both versions are recorded: %+v", docs)
		}
		if k, ok := PolicySlotKind(PolicySlot("tdx")); !ok || k != "tdx" {
			t.Fatal("PolicySlotKind")
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
		"sqlite": {url: "sqlite:" + filepath.Join(t.TempDir(), "x.db")},
		// Nothing listens on port 1: the store is unavailable.
		"postgres": {url: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", wantErr: ErrUnavailable},
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
	if _, err := Open(ctx, "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("password in error: %v", err)
	}
	for _, bad := range []string{"nocolon", "sqlite:", "sqlite:/tmp/a?b", "postgres://x:y@h:notaport/db"} {
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

// TestAuditTamperSQLite changes the audit table behind the store's back.
func TestAuditTamperSQLite(t *testing.T) {
	testAuditTamper(t, func(t *testing.T) (Store, func(string)) {
		s := openTestSQLite(t)
		return s, func(stmt string) {
			if _, err := s.db.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func testAuditTamper(t *testing.T, open func(t *testing.T) (Store, func(stmt string))) {
	ctx := context.Background()
	fill := func(t *testing.T, s Store) {
		for i := range 5 {
			if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0.Add(time.Duration(i) * time.Second), Event: "release",
				Outcome: "release_denied", Subject: "guest", KeyName: "disk", Reasons: []string{"status is warning"}}); err != nil {
				t.Fatal(err)
			}
		}
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK {
			t.Fatalf("before tampering: %+v, %v", rep, err)
		}
	}
	tests := map[string]struct {
		stmt    string
		wantID  int64
		wantMsg string
	}{
		"modified entry":     {stmt: "UPDATE audit SET outcome = 'granted' WHERE id = 3", wantID: 4, wantMsg: "entry 3 was modified"},
		"modified reasons":   {stmt: "UPDATE audit SET reasons = '[]' WHERE id = 2", wantID: 3, wantMsg: "entry 2 was modified"},
		"deleted in middle":  {stmt: "DELETE FROM audit WHERE id = 3", wantID: 4, wantMsg: "entry 3 is missing"},
		"deleted two":        {stmt: "DELETE FROM audit WHERE id IN (2, 3)", wantID: 4, wantMsg: "entries 2 to 3 are missing"},
		"deleted first":      {stmt: "DELETE FROM audit WHERE id = 1", wantID: 2, wantMsg: "entry 1 is missing"},
		"modified last":      {stmt: "UPDATE audit SET subject = 'other' WHERE id = 5", wantID: 5, wantMsg: "entry 5 (the last) was modified"},
		"truncated":          {stmt: "DELETE FROM audit WHERE id = 5", wantID: 5, wantMsg: "log truncated"},
		"link rewritten":     {stmt: "UPDATE audit SET prev_hash = NULL WHERE id = 2", wantID: 2, wantMsg: "does not chain"},
		"appended behind it": {stmt: "INSERT INTO audit (id, at, event, outcome, tee, subject, token_id, policy_id, policy_sha256, remote, reasons) VALUES (6, 0, 'x', 'x', '', '', '', '', '', '', '[]')", wantID: 6, wantMsg: "not covered by the head"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, exec := open(t)
			fill(t, s)
			exec(tt.stmt)
			rep, err := VerifyAudit(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || len(rep.Problems) == 0 {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			found := false
			for _, p := range rep.Problems {
				if p.ID == tt.wantID && strings.Contains(p.Reason, tt.wantMsg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("problems %+v lack %q at %d", rep.Problems, tt.wantMsg, tt.wantID)
			}
		})
	}
}

// TestRedeemWithAuditAtomicSQLite makes the audit write fail and checks
// that the nonce was not redeemed either.
func TestRedeemWithAuditAtomicSQLite(t *testing.T) {
	testRedeemWithAuditAtomic(t, func(t *testing.T) (Store, func(string)) {
		s := openTestSQLite(t)
		return s, func(stmt string) {
			if _, err := s.db.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func testRedeemWithAuditAtomic(t *testing.T, open func(t *testing.T) (Store, func(stmt string))) {
	ctx := context.Background()
	s, exec := open(t)
	if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "attest"}); err != nil {
		t.Fatal(err)
	}
	exec("DROP TABLE audit")
	_, err := s.RedeemNonceWithAudit(ctx, []byte("n"), t0.Add(time.Minute), AuditRecord{Time: t0, Event: "attest", TokenID: "jti"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with the audit table gone: got %v, want ErrUnavailable", err)
	}
	// Nothing of the failed transaction stayed: the nonce is free, the head
	// did not move.
	if err := s.RedeemNonce(ctx, []byte("n"), t0.Add(time.Minute)); err != nil {
		t.Fatalf("nonce redeemed without its audit record: %v", err)
	}
	if h, err := s.AuditHead(ctx); err != nil || h.LastID != 1 {
		t.Fatalf("audit head %+v, %v; want id 1", h, err)
	}
}

// TestMigrateV1ChainsLegacyAudit opens a version 1 database with audit
// records and checks that migration 2 chains them.
func TestMigrateV1ChainsLegacyAudit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := db.Exec(`INSERT INTO audit (at, event, outcome, tee, subject, token_id, policy_id, policy_sha256, remote, reasons)
			VALUES (?, 'attest', 'affirming', 'sim-sev-snp', 'g', 'j', 'p', 'd', '127.0.0.1', '["ok"]')`, t0.Add(time.Duration(i)).UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "release", Outcome: "granted"}); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyAudit(ctx, s)
	if err != nil || !rep.OK || rep.Entries != 4 || rep.HeadID != 4 {
		t.Fatalf("after migration: %+v, %v", rep, err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:/var/lib/x.db":                      "sqlite:/var/lib/x.db",
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                         "postgres://u@h/db",
		"postgres://h/db?password=pw&sslmode=x":     "postgres://h/db?password=xxxxx&sslmode=x",
		"postgres://u:pw@h:bad port/db":             "postgres://(unparsable URL)",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "pw") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
