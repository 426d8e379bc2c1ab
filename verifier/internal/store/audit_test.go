package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

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

// TestGenesisHashIsACopy changes the slice GenesisHash returns: the chain
// the store wrote must still verify, since its start is not shared state.
func TestGenesisHashIsACopy(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t)
	if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "attest"}); err != nil {
		t.Fatal(err)
	}
	g := GenesisHash()
	g[0] = 1
	if got := GenesisHash(); got[0] != 0 || len(got) != 32 {
		t.Fatalf("GenesisHash() = %x after a caller changed its result; want 32 zero bytes", got)
	}
	if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK {
		t.Fatalf("audit chain after a caller changed GenesisHash(): %+v, %v", rep, err)
	}
}
