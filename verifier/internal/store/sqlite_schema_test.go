package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

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
