package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
)

// migration is one schema version: statements applied together in one
// transaction, so a failure or a crash leaves the previous version intact.
type migration struct {
	version int
	stmts   []string
	// fn, when set, runs after stmts in the same transaction (data
	// migrations that need Go, like hashing), in its database's SQL.
	fn func(ctx context.Context, tx *sql.Tx) error
}

// dialectOf returns the dialect of db's driver.
func dialectOf(db *sql.DB) (*dialect, error) {
	switch drv := db.Driver().(type) {
	case *sqlite.Driver:
		return sqliteDialect(), nil
	case *stdlib.Driver:
		return pgDialect(), nil
	default:
		return nil, fmt.Errorf("no SQL dialect for the database driver %T", drv)
	}
}

// migrate applies the migrations db lacks, each in its own transaction,
// under the dialect's schema lock (or the database's write lock), so that
// processes opening a new database at once apply each once. A database
// whose schema is newer than the newest migration is refused.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	d, err := dialectOf(db)
	if err != nil {
		return err
	}
	latest := 0
	for _, m := range ms {
		if m.version != latest+1 {
			return fmt.Errorf("migration %d follows %d: versions must be consecutive", m.version, latest)
		}
		latest = m.version
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, d, m, latest); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration applies m unless the database has it; latest is the
// newest version this program knows.
func applyMigration(ctx context.Context, db *sql.DB, d *dialect, m migration, latest int) error {
	action := fmt.Sprintf("applying migration %d", m.version)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(action, err)
	}
	defer func() { _ = tx.Rollback() }()
	if d.lockSchema != "" {
		if _, err := tx.ExecContext(ctx, d.lockSchema); err != nil {
			return unavailable("locking schema", err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.ddl(ddlSchemaMigrations)[0]); err != nil {
		return unavailable("creating schema_migrations", err)
	}
	// Read inside the (locking) transaction, so that two processes
	// opening a new database at once apply each migration once.
	var have sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&have); err != nil {
		return unavailable("reading schema version", err)
	}
	if have.Valid && int(have.Int64) > latest {
		return fmt.Errorf("database schema version %d is newer than this program's %d", have.Int64, latest)
	}
	if have.Valid && int(have.Int64) >= m.version {
		return nil
	}
	for i, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("applying migration %d statement %d: %w", m.version, i, err)
		}
	}
	if m.fn != nil {
		if err := m.fn(ctx, tx); err != nil {
			return fmt.Errorf("%s: %w", action, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.q("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
		m.version, time.Now().UnixNano()); err != nil {
		return unavailable(action, err)
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
