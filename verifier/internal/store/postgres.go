package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultPostgresConnectTimeout bounds connecting to PostgreSQL when the
// URL sets no connect_timeout, so that requests fail with ErrUnavailable
// instead of hanging while the database is unreachable.
const DefaultPostgresConnectTimeout = 5 * time.Second

// DefaultPostgresMaxConns is the pool size when the URL sets no
// pool_max_conns: enough for the appraisals and releases a verifier runs at
// once (2 × GOMAXPROCS by default, each holding one connection at a time),
// its background loops and the admin API. pgx's own default, max(4,
// NumCPU), makes requests queue for a connection on small machines. Keep
// replicas × pool size under the server's max_connections.
func DefaultPostgresMaxConns() int32 {
	return int32(2*runtime.GOMAXPROCS(0) + 4)
}

// Advisory lock keys (one database may hold several schemas; the keys
// only serialize, they never block for long).
const (
	pgLockMigrate int64 = 0x636f6e666964616e // "confidan"
	pgLockSigning int64 = 0x636f6e666964616f
)

// Postgres is the Store for several replicas: one PostgreSQL database
// (or schema, through search_path) shared by every verifier process, over
// a pgx connection pool. Transactions run at READ COMMITTED; the writes
// that must serialize across processes take a row lock (the audit head, a
// release key) or an advisory transaction lock (signing key rotation,
// migrations). A lost connection fails the operation with ErrUnavailable
// and rolls it back; the pool reconnects by itself when the database
// returns.
type Postgres struct {
	// The store: its writer runs nonce redemptions and audit appends,
	// batched (one transaction, one lock wait on the audit head and one
	// connection for all the writes waiting at a time); other writes
	// run in transactions of their own.
	*sqlStore
	pool *pgxpool.Pool
}

// pgWriteTimeout bounds a batch of writes, so that a database that stops
// answering fails them with ErrUnavailable instead of holding them all.
const pgWriteTimeout = 15 * time.Second

var _ Store = (*Postgres)(nil)

// pgDialect is PostgreSQL's SQL: $n placeholders, row locks, advisory
// locks, writes in WITH.
func pgDialect() *dialect {
	return &dialect{
		name:            "PostgreSQL",
		numbered:        true,
		rowLocks:        true,
		withWrites:      true,
		lockSigningKeys: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", pgLockSigning),
		lockSchema:      fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", pgLockMigrate),
		scrub:           pgVacuumSecrets,
		types:           strings.NewReplacer("{bytes}", "BYTEA", "{int64}", "BIGINT"),
	}
}

// OpenPostgres connects to the database a libpq URL names (for example
// postgres://user@host:5432/db?sslmode=verify-full; search_path=SCHEMA
// as a URL parameter selects a schema that must exist) and applies pending
// schema migrations.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, fmt.Errorf("opening PostgreSQL store %s: invalid URL", Redact(url))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultPostgresConnectTimeout
	}
	cfg.HealthCheckPeriod = 10 * time.Second
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultPostgresMaxConns()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable("opening PostgreSQL store "+Redact(url), err)
	}
	// database/sql over the pool: the pool keeps the connections.
	db := stdlib.OpenDBFromPool(pool)
	if err := migrate(ctx, db, pgMigrations); err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("opening PostgreSQL store %s: %w", Redact(url), err)
	}
	s, err := newSQLStore(ctx, pgDialect(), db, db, false, pgWriteTimeout)
	if err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	return &Postgres{sqlStore: s, pool: pool}, nil
}

// Close stops the writer (after the batch it runs) and closes the pool.
// Writes and reads after Close fail with ErrUnavailable.
func (s *Postgres) Close() error {
	err := s.sqlStore.Close()
	s.pool.Close()
	return err
}

// pgVacuumSecrets rewrites the secrets table into a new file and drops
// the old one, with the dead row versions in it.
func pgVacuumSecrets(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, "VACUUM FULL secrets"); err != nil {
		return fmt.Errorf("vacuuming the old value: %w", errors.Join(ErrNotScrubbed, err))
	}
	return nil
}

// PostgreSQL SQLSTATEs of the conditions diskCondition reports.
const (
	pgDiskFull   = "53100"
	pgReadOnlyTx = "25006"
)

// pgCondition returns ErrFull or ErrReadOnly when err is PostgreSQL's
// saying so, nil otherwise.
func pgCondition(err error) error {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return nil
	}
	switch pg.Code {
	case pgDiskFull:
		return ErrFull
	case pgReadOnlyTx:
		return ErrReadOnly
	}
	return nil
}
