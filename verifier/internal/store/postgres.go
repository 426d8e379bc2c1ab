package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
	pool *pgxpool.Pool
	// w runs nonce redemptions and audit appends, batched (group commit):
	// one transaction, one lock wait on the audit head and one connection
	// for all the writes waiting at a time.
	w *writer[pgx.Tx]
}

// pgWriteTimeout bounds a batch of writes, so that a database that stops
// answering fails them with ErrUnavailable instead of holding them all.
const pgWriteTimeout = 15 * time.Second

var _ Store = (*Postgres)(nil)

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
	s := &Postgres{pool: pool}
	if err := s.migrate(ctx, pgMigrations); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening PostgreSQL store %s: %w", Redact(url), err)
	}
	s.w = startWriter(func(ctx context.Context) (batch[pgx.Tx], error) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		// The audit head first: every batch takes its lock before any
		// other, so that the batches of several replicas never deadlock
		// (on a nonce one inserted and the head the other holds).
		if _, err := tx.Exec(ctx, "SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE"); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, err
		}
		return pgBatch{tx}, nil
	}, pgWriteTimeout)
	return s, nil
}

// pgBatch is the transaction of a batch of writes.
type pgBatch struct{ t pgx.Tx }

func (b pgBatch) tx() pgx.Tx { return b.t }

func (b pgBatch) savepoint(ctx context.Context) error {
	_, err := b.t.Exec(ctx, "SAVEPOINT w")
	return err
}

func (b pgBatch) release(ctx context.Context) error {
	_, err := b.t.Exec(ctx, "RELEASE SAVEPOINT w")
	return err
}

func (b pgBatch) rollbackTo(ctx context.Context) error {
	_, err := b.t.Exec(ctx, "ROLLBACK TO SAVEPOINT w")
	return err
}

func (b pgBatch) commit(ctx context.Context) error   { return b.t.Commit(ctx) }
func (b pgBatch) rollback(ctx context.Context) error { return b.t.Rollback(ctx) }

// pgMigrations is the PostgreSQL schema history (its own numbering; the
// tables match SQLite's). Append only.
var pgMigrations = []migration{
	{version: 1, stmts: []string{
		`CREATE TABLE nonces (
			id BYTEA PRIMARY KEY,
			expires_at BIGINT NOT NULL
		)`,
		`CREATE INDEX nonces_expires_at ON nonces (expires_at)`,
		`CREATE TABLE secrets (
			name TEXT PRIMARY KEY,
			value BYTEA NOT NULL,
			created_at BIGINT NOT NULL
		)`,
		`CREATE TABLE signing_keys (
			kid TEXT PRIMARY KEY,
			alg TEXT NOT NULL,
			public_jwk BYTEA NOT NULL,
			sealed_private BYTEA NOT NULL,
			created_at BIGINT NOT NULL,
			retired_at BIGINT,
			expires_at BIGINT,
			CHECK ((retired_at IS NULL) = (expires_at IS NULL))
		)`,
		`CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL`,
		`CREATE TABLE documents (
			kind TEXT NOT NULL,
			sha256 TEXT NOT NULL,
			id TEXT NOT NULL,
			content BYTEA NOT NULL,
			loaded_at BIGINT NOT NULL,
			PRIMARY KEY (kind, sha256)
		)`,
		`CREATE TABLE active_documents (
			slot TEXT PRIMARY KEY,
			kind TEXT NOT NULL,
			sha256 TEXT NOT NULL,
			activated_at BIGINT NOT NULL,
			FOREIGN KEY (kind, sha256) REFERENCES documents (kind, sha256)
		)`,
		`CREATE TABLE audit (
			id BIGINT PRIMARY KEY,
			at BIGINT NOT NULL,
			event TEXT NOT NULL,
			outcome TEXT NOT NULL,
			tee TEXT NOT NULL,
			subject TEXT NOT NULL,
			token_id TEXT NOT NULL,
			policy_id TEXT NOT NULL,
			policy_sha256 TEXT NOT NULL,
			remote TEXT NOT NULL,
			reasons TEXT NOT NULL,
			key_name TEXT NOT NULL DEFAULT '',
			key_version INTEGER NOT NULL DEFAULT 0,
			prev_hash BYTEA
		)`,
		`CREATE INDEX audit_at ON audit (at)`,
		`CREATE TABLE audit_head (
			id INTEGER PRIMARY KEY CHECK (id = 1),
			last_id BIGINT NOT NULL,
			last_hash BYTEA NOT NULL
		)`,
		`INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')`,
		`CREATE TABLE release_keys (
			name TEXT PRIMARY KEY,
			origin TEXT NOT NULL CHECK (origin IN ('platform', 'customer')),
			policy BYTEA NOT NULL,
			policy_sha256 TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			next_version INTEGER NOT NULL
		)`,
		`CREATE TABLE release_key_versions (
			name TEXT NOT NULL REFERENCES release_keys (name) ON DELETE CASCADE,
			version INTEGER NOT NULL,
			sealed BYTEA NOT NULL,
			kek_id TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (name, version)
		)`,
	}},
}

// migrate applies the migrations the database lacks, each in its own
// transaction under an advisory lock, so that replicas starting together
// apply each once. A schema newer than the program is refused.
func (s *Postgres) migrate(ctx context.Context, ms []migration) error {
	latest := 0
	for _, m := range ms {
		if m.version != latest+1 {
			return fmt.Errorf("migration %d follows %d: versions must be consecutive", m.version, latest)
		}
		latest = m.version
	}
	for _, m := range ms {
		if m.fn != nil {
			return fmt.Errorf("migration %d: Go steps are SQLite only", m.version)
		}
		err := s.tx(ctx, fmt.Sprintf("applying migration %d", m.version), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgLockMigrate); err != nil {
				return unavailable("locking schema", err)
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY,
				applied_at BIGINT NOT NULL
			)`); err != nil {
				return unavailable("creating schema_migrations", err)
			}
			var have *int
			if err := tx.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&have); err != nil {
				return unavailable("reading schema version", err)
			}
			if have != nil && *have > latest {
				return fmt.Errorf("database schema version %d is newer than this program's %d", *have, latest)
			}
			if have != nil && *have >= m.version {
				return nil
			}
			for i, stmt := range m.stmts {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("applying migration %d statement %d: %w", m.version, i, err)
				}
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
				m.version, time.Now().UnixNano()); err != nil {
				return unavailable(fmt.Sprintf("applying migration %d", m.version), err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Close stops the writer (after the batch it runs) and closes the pool.
// Writes and reads after Close fail with ErrUnavailable.
func (s *Postgres) Close() error {
	s.w.close()
	s.pool.Close()
	return nil
}

// Ping checks that the database answers a query.
func (s *Postgres) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return unavailable("pinging PostgreSQL store", err)
	}
	return nil
}

// tx runs f in one transaction, committing when it returns nil. Errors
// from f are returned as they are; database errors match ErrUnavailable.
func (s *Postgres) tx(ctx context.Context, action string, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return unavailable(action, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable(action, err)
	}
	return nil
}

// RedeemNonce records id until expires; a second redemption is
// ErrNonceReused.
func (s *Postgres) RedeemNonce(ctx context.Context, id []byte, expires time.Time) error {
	if len(id) == 0 {
		return errors.New("redeeming nonce: empty id")
	}
	return s.w.write(ctx, "redeeming nonce", func(ctx context.Context, tx pgx.Tx) error {
		return pgRedeemNonce(ctx, tx, id, expires)
	})
}

func pgRedeemNonce(ctx context.Context, tx pgx.Tx, id []byte, expires time.Time) error {
	tag, err := tx.Exec(ctx, "INSERT INTO nonces (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
		id, expires.UnixNano())
	if err != nil {
		return unavailable("redeeming nonce", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("redeeming nonce: %w", ErrNonceReused)
	}
	return nil
}

// RedeemNonceWithAudit redeems the nonce and appends r in one
// transaction.
func (s *Postgres) RedeemNonceWithAudit(ctx context.Context, id []byte, expires time.Time, r AuditRecord) (int64, error) {
	if len(id) == 0 {
		return 0, errors.New("redeeming nonce: empty id")
	}
	r.normalize()
	rj, err := json.Marshal(r.Reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	err = s.w.write(ctx, "redeeming nonce and appending audit record", func(ctx context.Context, tx pgx.Tx) error {
		if err := pgRedeemNonce(ctx, tx, id, expires); err != nil {
			return err
		}
		return pgAppendAudit(ctx, tx, &r, rj)
	})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// PruneNonces deletes nonces that expired before the given time.
func (s *Postgres) PruneNonces(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM nonces WHERE expires_at < $1", before.UnixNano())
	if err != nil {
		return 0, unavailable("pruning nonces", err)
	}
	return tag.RowsAffected(), nil
}

// Secret returns the named secret, creating it on first use; concurrent
// first uses in several processes all get the value that was stored first.
func (s *Postgres) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var value []byte
	err := s.tx(ctx, "loading secret "+name, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT value FROM secrets WHERE name = $1", name).Scan(&value)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return unavailable("loading secret "+name, err)
		}
		v, err := create()
		if err != nil {
			return fmt.Errorf("creating secret %s: %w", name, err)
		}
		if len(v) == 0 {
			return fmt.Errorf("creating secret %s: empty value", name)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
			name, v, time.Now().UnixNano()); err != nil {
			return unavailable("storing secret "+name, err)
		}
		// Another process may have won: read what is stored.
		if err := tx.QueryRow(ctx, "SELECT value FROM secrets WHERE name = $1", name).Scan(&value); err != nil {
			return unavailable("loading secret "+name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

// SigningKeys returns all stored signing keys, current first.
func (s *Postgres) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+signingKeyColumns+
		" FROM signing_keys ORDER BY retired_at IS NOT NULL, created_at DESC")
	if err != nil {
		return nil, unavailable("listing signing keys", err)
	}
	defer rows.Close()
	return scanAll("listing signing keys", rows, scanSigningKey)
}

// RotateSigningKey makes next current if there is no current key or the
// current one is older than rotateBefore.
func (s *Postgres) RotateSigningKey(ctx context.Context, next SigningKey, rotateBefore, keepUntil time.Time) (bool, error) {
	if next.KID == "" || next.Alg == "" || len(next.PublicJWK) == 0 || len(next.SealedPrivate) == 0 {
		return false, errors.New("rotating signing key: incomplete key")
	}
	rotated := false
	err := s.tx(ctx, "rotating signing key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgLockSigning); err != nil {
			return unavailable("rotating signing key", err)
		}
		var (
			kid     string
			created int64
		)
		err := tx.QueryRow(ctx, "SELECT kid, created_at FROM signing_keys WHERE retired_at IS NULL").Scan(&kid, &created)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			kid = ""
		case err != nil:
			return unavailable("rotating signing key", err)
		case !fromNanos(created).Before(rotateBefore):
			return nil
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM signing_keys WHERE kid = $1", next.KID).Scan(&n); err != nil {
			return unavailable("rotating signing key", err)
		}
		if n > 0 {
			return fmt.Errorf("rotating signing key: key %s: %w", next.KID, ErrConflict)
		}
		if kid != "" {
			if _, err := tx.Exec(ctx, "UPDATE signing_keys SET retired_at = $1, expires_at = $2 WHERE kid = $3",
				next.CreatedAt.UnixNano(), keepUntil.UnixNano(), kid); err != nil {
				return unavailable("retiring signing key", err)
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO signing_keys ("+signingKeyColumns+") VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
			next.KID, next.Alg, next.PublicJWK, next.SealedPrivate, next.CreatedAt.UnixNano()); err != nil {
			return unavailable("storing signing key", err)
		}
		rotated = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return rotated, nil
}

// PruneSigningKeys deletes retired keys that expired before the given time.
func (s *Postgres) PruneSigningKeys(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND expires_at < $1", before.UnixNano())
	if err != nil {
		return 0, unavailable("pruning signing keys", err)
	}
	return tag.RowsAffected(), nil
}

const pgUpsertDocument = `INSERT INTO documents (` + documentColumns + `) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (kind, sha256) DO UPDATE SET loaded_at = excluded.loaded_at, id = excluded.id`

// RecordDocument stores a policy or reference values version.
func (s *Postgres) RecordDocument(ctx context.Context, d Document) error {
	if d.Kind == "" || d.SHA256 == "" {
		return errors.New("recording document: missing kind or digest")
	}
	if _, err := s.pool.Exec(ctx, pgUpsertDocument, string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano()); err != nil {
		return unavailable("recording document", err)
	}
	return nil
}

// Documents returns the recorded versions of one kind, newest first.
func (s *Postgres) Documents(ctx context.Context, kind DocumentKind) ([]Document, error) {
	rows, err := s.pool.Query(ctx,
		"SELECT "+documentColumns+" FROM documents WHERE kind = $1 ORDER BY loaded_at DESC", string(kind))
	if err != nil {
		return nil, unavailable("listing documents", err)
	}
	defer rows.Close()
	return scanAll("listing documents", rows, scanDocument)
}

// ActivateDocument records d and makes it the active document of slot.
func (s *Postgres) ActivateDocument(ctx context.Context, slot string, d Document) error {
	if slot == "" || d.Kind == "" || d.SHA256 == "" {
		return errors.New("activating document: missing slot, kind or digest")
	}
	return s.tx(ctx, "activating document", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgUpsertDocument, string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO active_documents (slot, kind, sha256, activated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (slot) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, activated_at = excluded.activated_at`,
			slot, string(d.Kind), d.SHA256, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		return nil
	})
}

// ActiveDocuments returns the active document of every slot.
func (s *Postgres) ActiveDocuments(ctx context.Context) (map[string]Document, error) {
	rows, err := s.pool.Query(ctx, activeDocumentsQuery)
	if err != nil {
		return nil, unavailable("listing active documents", err)
	}
	defer rows.Close()
	return activeDocuments(rows)
}

// AppendAudit appends an audit record, chained to the one before it. The
// head row lock serializes appends from every process; in this one, the
// writer batches them.
func (s *Postgres) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	r.normalize()
	rj, err := json.Marshal(r.Reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	err = s.w.write(ctx, "appending audit record", func(ctx context.Context, tx pgx.Tx) error {
		return pgAppendAudit(ctx, tx, &r, rj)
	})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// pgAppendAudit chains r (normalized; rj its reasons as JSON) to the head,
// which it locks until tx ends (a writer batch holds it already), and
// stores it. The insert and the head update go in one round trip.
func pgAppendAudit(ctx context.Context, tx pgx.Tx, r *AuditRecord, rj []byte) error {
	var last int64
	var prev []byte
	if err := tx.QueryRow(ctx, "SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE").Scan(&last, &prev); err != nil {
		return unavailable("appending audit record", err)
	}
	r.ID, r.PrevHash = last+1, prev
	b := &pgx.Batch{}
	b.Queue("INSERT INTO audit ("+auditColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
		r.ID, r.Time.UnixNano(), r.Event, r.Outcome, r.TEE, r.Subject, r.TokenID, r.PolicyID, r.PolicySHA256,
		r.Remote, string(rj), r.KeyName, r.KeyVersion, r.PrevHash)
	b.Queue("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1", r.ID, r.Hash())
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return unavailable("appending audit record", err)
	}
	return nil
}

// AuditRecords returns up to limit records after afterID, oldest first.
func (s *Postgres) AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, "SELECT "+auditColumns+" FROM audit WHERE id > $1 ORDER BY id LIMIT $2", afterID, limit)
	if err != nil {
		return nil, unavailable("listing audit records", err)
	}
	defer rows.Close()
	return scanAll("listing audit records", rows, scanAuditRow)
}

// AuditHead returns the last record's id and hash.
func (s *Postgres) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	if err := s.pool.QueryRow(ctx, "SELECT last_id, last_hash FROM audit_head WHERE id = 1").Scan(&h.LastID, &h.Hash); err != nil {
		return AuditHead{}, unavailable("reading audit head", err)
	}
	return h, nil
}

// CreateReleaseKey stores a new key with its first version.
func (s *Postgres) CreateReleaseKey(ctx context.Context, k ReleaseKey, first ReleaseKeyVersion) error {
	if err := checkNewKey(k, first); err != nil {
		return err
	}
	return s.tx(ctx, "creating release key", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO release_keys (name, origin, policy, policy_sha256, created_at, updated_at, next_version)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING`,
			k.Name, k.Origin, k.Policy, k.PolicySHA256, k.CreatedAt.UnixNano(), k.CreatedAt.UnixNano(), first.Version+1)
		if err != nil {
			return unavailable("creating release key", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("creating release key %s: %w", k.Name, ErrConflict)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO release_key_versions (name, version, sealed, kek_id, created_at)
			VALUES ($1, $2, $3, $4, $5)`, k.Name, first.Version, first.Sealed, first.KEKID, first.CreatedAt.UnixNano()); err != nil {
			return unavailable("creating release key", err)
		}
		return nil
	})
}

// RotateReleaseKey adds a version to the named key.
func (s *Postgres) RotateReleaseKey(ctx context.Context, name string, at time.Time, seal func(version int) (ReleaseKeyVersion, error)) (int, error) {
	var version int
	err := s.tx(ctx, "rotating release key", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT next_version FROM release_keys WHERE name = $1 FOR UPDATE", name).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("rotating release key %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return unavailable("rotating release key", err)
		}
		v, err := seal(version)
		if err != nil {
			return fmt.Errorf("rotating release key %s: %w", name, err)
		}
		if v.Version != version || len(v.Sealed) == 0 {
			return fmt.Errorf("rotating release key %s: sealed version %d, want %d", name, v.Version, version)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO release_key_versions (name, version, sealed, kek_id, created_at)
			VALUES ($1, $2, $3, $4, $5)`, name, v.Version, v.Sealed, v.KEKID, v.CreatedAt.UnixNano()); err != nil {
			return unavailable("rotating release key", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE release_keys SET next_version = $1, updated_at = $2 WHERE name = $3",
			version+1, at.UnixNano(), name); err != nil {
			return unavailable("rotating release key", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// DeleteReleaseKey deletes a version, or the whole key for version 0.
func (s *Postgres) DeleteReleaseKey(ctx context.Context, name string, version int) error {
	return s.tx(ctx, "deleting release key", func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM release_keys WHERE name = $1 FOR UPDATE", name).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("deleting release key %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return unavailable("deleting release key", err)
		}
		if version == 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM release_keys WHERE name = $1", name); err != nil {
				return unavailable("deleting release key", err)
			}
			return nil
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM release_key_versions WHERE name = $1", name).Scan(&n); err != nil {
			return unavailable("deleting release key", err)
		}
		tag, err := tx.Exec(ctx, "DELETE FROM release_key_versions WHERE name = $1 AND version = $2", name, version)
		if err != nil {
			return unavailable("deleting release key", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("deleting release key %s version %d: %w", name, version, ErrNotFound)
		}
		if n == 1 {
			return fmt.Errorf("deleting release key %s version %d: it is the only version; delete the key instead: %w", name, version, ErrConflict)
		}
		return nil
	})
}

// SetReleasePolicy replaces the release policy of the named key.
func (s *Postgres) SetReleasePolicy(ctx context.Context, name string, policy []byte, sha string, at time.Time) error {
	if len(policy) == 0 || sha == "" {
		return errors.New("setting release policy: empty policy")
	}
	tag, err := s.pool.Exec(ctx, "UPDATE release_keys SET policy = $1, policy_sha256 = $2, updated_at = $3 WHERE name = $4",
		policy, sha, at.UnixNano(), name)
	if err != nil {
		return unavailable("setting release policy", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("setting release policy of %s: %w", name, ErrNotFound)
	}
	return nil
}

// ReleaseKey returns the named key and one version (0: the latest), in
// one query.
func (s *Postgres) ReleaseKey(ctx context.Context, name string, version int) (ReleaseKey, ReleaseKeyVersion, error) {
	var (
		k                    ReleaseKey
		v                    ReleaseKeyVersion
		created, updated, at int64
	)
	err := s.pool.QueryRow(ctx, `SELECT k.name, k.origin, k.policy, k.policy_sha256, k.created_at, k.updated_at,
			v.version, v.sealed, v.kek_id, v.created_at
		FROM release_keys k JOIN release_key_versions v ON v.name = k.name
		WHERE k.name = $1 AND ($2 = 0 OR v.version = $2)
		ORDER BY v.version DESC LIMIT 1`, name, version).
		Scan(&k.Name, &k.Origin, &k.Policy, &k.PolicySHA256, &created, &updated, &v.Version, &v.Sealed, &v.KEKID, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return ReleaseKey{}, ReleaseKeyVersion{}, fmt.Errorf("loading release key %s version %d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return ReleaseKey{}, ReleaseKeyVersion{}, unavailable("loading release key", err)
	}
	k.CreatedAt, k.UpdatedAt, v.CreatedAt = fromNanos(created), fromNanos(updated), fromNanos(at)
	return k, v, nil
}

// ReleaseKeyInfo returns the named key with its versions' metadata.
func (s *Postgres) ReleaseKeyInfo(ctx context.Context, name string) (ReleaseKey, error) {
	keys, err := s.releaseKeys(ctx, name)
	if err != nil {
		return ReleaseKey{}, err
	}
	if len(keys) == 0 {
		return ReleaseKey{}, fmt.Errorf("loading release key %s: %w", name, ErrNotFound)
	}
	return keys[0], nil
}

// ReleaseKeys lists every key with its versions' metadata.
func (s *Postgres) ReleaseKeys(ctx context.Context) ([]ReleaseKey, error) {
	return s.releaseKeys(ctx, "")
}

func (s *Postgres) releaseKeys(ctx context.Context, name string) ([]ReleaseKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT k.name, k.origin, k.policy, k.policy_sha256, k.created_at, k.updated_at,
			v.version, v.kek_id, v.created_at
		FROM release_keys k LEFT JOIN release_key_versions v ON v.name = k.name
		WHERE $1 = '' OR k.name = $1
		ORDER BY k.name, v.version`, name)
	if err != nil {
		return nil, unavailable("listing release keys", err)
	}
	defer rows.Close()
	var keys []ReleaseKey
	for rows.Next() {
		var (
			k                ReleaseKey
			created, updated int64
			version          *int
			kekID            *string
			at               *int64
		)
		if err := rows.Scan(&k.Name, &k.Origin, &k.Policy, &k.PolicySHA256, &created, &updated, &version, &kekID, &at); err != nil {
			return nil, unavailable("listing release keys", err)
		}
		if len(keys) == 0 || keys[len(keys)-1].Name != k.Name {
			k.CreatedAt, k.UpdatedAt = fromNanos(created), fromNanos(updated)
			keys = append(keys, k)
		}
		if version != nil {
			last := &keys[len(keys)-1]
			last.Versions = append(last.Versions, ReleaseKeyVersion{Version: *version, KEKID: *kekID, CreatedAt: fromNanos(*at)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing release keys", err)
	}
	return keys, nil
}
