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
	// fn, when set, runs after stmts in the same transaction (data
	// migrations that need Go, like hashing).
	fn func(ctx context.Context, tx *sql.Tx) error
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
	// 2: release keys, active documents, audit key fields and hash chain.
	{version: 2, stmts: []string{
		`CREATE TABLE release_keys (
			name TEXT PRIMARY KEY,
			origin TEXT NOT NULL CHECK (origin IN ('platform', 'customer')),
			policy BLOB NOT NULL,
			policy_sha256 TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			updated_at INTEGER NOT NULL,
			next_version INTEGER NOT NULL
		)`,
		`CREATE TABLE release_key_versions (
			name TEXT NOT NULL REFERENCES release_keys (name),
			version INTEGER NOT NULL,
			sealed BLOB NOT NULL,
			kek_id TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (name, version)
		)`,
		`CREATE TABLE active_documents (
			slot TEXT PRIMARY KEY,
			kind TEXT NOT NULL,
			sha256 TEXT NOT NULL,
			activated_at INTEGER NOT NULL
		)`,
		`ALTER TABLE audit ADD COLUMN key_name TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE audit ADD COLUMN prev_hash BLOB`,
		`CREATE TABLE audit_head (
			id INTEGER PRIMARY KEY CHECK (id = 1),
			last_id INTEGER NOT NULL,
			last_hash BLOB NOT NULL
		)`,
	}, fn: chainLegacyAudit},
}

// chainLegacyAudit links the audit records written before the chain
// existed, oldest first, and writes the head.
func chainLegacyAudit(ctx context.Context, tx *sql.Tx) error {
	recs, err := scanAudit(tx.QueryContext(ctx, "SELECT "+auditColumns+" FROM audit ORDER BY id"))
	if err != nil {
		return err
	}
	prev, last := GenesisHash, int64(0)
	for i := range recs {
		r := &recs[i]
		r.PrevHash = prev
		if _, err := tx.ExecContext(ctx, "UPDATE audit SET prev_hash = ? WHERE id = ?", prev, r.ID); err != nil {
			return err
		}
		prev, last = r.Hash(), r.ID
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)", last, prev)
	return err
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
	if m.fn != nil {
		if err := m.fn(ctx, tx); err != nil {
			return fmt.Errorf("applying migration %d: %w", m.version, err)
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
