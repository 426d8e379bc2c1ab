package store

import (
	"context"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
)

func TestAuditEscapedSQLite(t *testing.T) {
	testAuditEscaped(t, openTestSQLite(t))
}

func TestAuditEscapedPostgres(t *testing.T) {
	testAuditEscaped(t, openTestPostgres(t, pgtest.DSN(t)))
}

// testAuditEscaped: whatever text a writer hands AppendAudit, the stored
// record holds it escaped (printable ASCII only) and bounded, the chain
// still verifies, and printable text is kept as it is.
func testAuditEscaped(t *testing.T, s Store) {
	ctx := context.Background()
	forged := "x\n2026-12-07T17:00:00Z attest: affirming sub=sev-snp:forged"
	osc := "\x1b]0;pwned\x07"
	long := strings.Repeat("\u009b2J", 3000)
	in := AuditRecord{Time: t0, Event: "release" + osc, Outcome: "key_unknown\r", TEE: "\u202esim", Subject: forged,
		TokenID: "jti\x00", KeyName: osc, PolicyID: "p\xff", PolicySHA256: "abc", Remote: "10.0.0.1\t",
		Reasons: []string{forged, long, "printable reason: kept"}}
	if _, err := s.AppendAudit(ctx, in); err != nil {
		t.Fatal(err)
	}
	recs, err := s.AuditRecords(ctx, 0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("records: %+v, %v", recs, err)
	}
	got := recs[0]
	for _, f := range append([]string{got.Event, got.Outcome, got.TEE, got.Subject, got.TokenID, got.KeyName,
		got.PolicyID, got.PolicySHA256, got.Remote}, got.Reasons...) {
		if !termsafe.Safe(f) || len(f) > maxAuditText {
			t.Errorf("stored text %q (%d bytes) is raw or unbounded", f, len(f))
		}
	}
	if got.KeyName != `\x1b]0;pwned\x07` || got.Subject != `x\n2026-12-07T17:00:00Z attest: affirming sub=sev-snp:forged` ||
		got.TEE != `\u202esim` || got.PolicyID != `p\xff` || got.PolicySHA256 != "abc" {
		t.Errorf("stored %+v", got)
	}
	if len(got.Reasons) != 3 || !strings.HasSuffix(got.Reasons[1], termsafe.Marker) || got.Reasons[2] != "printable reason: kept" {
		t.Errorf("stored reasons %q", got.Reasons)
	}
	if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK {
		t.Fatalf("chain after escaped text: %+v, %v", rep, err)
	}
}
