package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migration is one schema version: statements applied together in one
// transaction, so a failure or a crash leaves the previous version intact.
type migration struct {
	version int
	stmts   []string
}

// migrations is the schema history. Append only: never edit an applied
// version, add a new one.
var migrations = []migration{
	{version: 1, stmts: []string{
		`CREATE TABLE nonces (
			id BLOB PRIMARY KEY,
			expires_at INTEGER NOT NULL
		)`,
		`CREATE INDEX nonces_expires_at ON nonces (expires_at)`,
		`CREATE TABLE secrets (
			name TEXT PRIMARY KEY,
			value BLOB NOT NULL,
			created_at INTEGER NOT NULL
		)`,
		`CREATE TABLE signing_keys (
			kid TEXT PRIMARY KEY,
			alg TEXT NOT NULL,
			public_jwk BLOB NOT NULL,
			sealed_private BLOB NOT NULL,
			created_at INTEGER NOT NULL,
			retired_at INTEGER,
			expires_at INTEGER,
			CHECK ((retired_at IS NULL) = (expires_at IS NULL))
		)`,
		// At most one current key.
		`CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL`,
		`CREATE TABLE documents (
			kind TEXT NOT NULL,
			sha256 TEXT NOT NULL,
			id TEXT NOT NULL,
			content BLOB NOT NULL,
			loaded_at INTEGER NOT NULL,
			PRIMARY KEY (kind, sha256)
		)`,
		`CREATE TABLE audit (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			at INTEGER NOT NULL,
			event TEXT NOT NULL,
			outcome TEXT NOT NULL,
			tee TEXT NOT NULL,
			subject TEXT NOT NULL,
			token_id TEXT NOT NULL,
			policy_id TEXT NOT NULL,
			policy_sha256 TEXT NOT NULL,
			remote TEXT NOT NULL,
			reasons TEXT NOT NULL
		)`,
		`CREATE INDEX audit_at ON audit (at)`,
	}},
}

// migrate applies the migrations db lacks, each in its own transaction. A
// database whose schema is newer than the newest migration is refused.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return unavailable("creating schema_migrations", err)
	}
	latest := 0
	for _, m := range ms {
		if m.version != latest+1 {
			return fmt.Errorf("migration %d follows %d: versions must be consecutive", m.version, latest)
		}
		latest = m.version
	}
	var have sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&have); err != nil {
		return unavailable("reading schema version", err)
	}
	if have.Valid && int(have.Int64) > latest {
		return fmt.Errorf("database schema version %d is newer than this program's %d", have.Int64, latest)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(fmt.Sprintf("applying migration %d", m.version), err)
	}
	defer func() { _ = tx.Rollback() }()
	// Checked inside the (write-locking) transaction so that two processes
	// opening a new database at once apply each migration once.
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
		return unavailable(fmt.Sprintf("applying migration %d", m.version), err)
	}
	if n > 0 {
		return nil
	}
	for i, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("applying migration %d statement %d: %w", m.version, i, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
		m.version, time.Now().UnixNano()); err != nil {
		return unavailable(fmt.Sprintf("applying migration %d", m.version), err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable(fmt.Sprintf("committing migration %d", m.version), err)
	}
	return nil
}

// schemaVersion returns the highest applied migration.
func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, unavailable("reading schema version", err)
	}
	if !v.Valid {
		return 0, errors.New("no schema version")
	}
	return int(v.Int64), nil
}
