package store

import (
	"context"
	"errors"
	"fmt"
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
