package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	// The pure-Go SQLite driver, registered as "sqlite".
	_ "modernc.org/sqlite"
)

// SQLite is the embedded Store: one database file, WAL journal, full
// synchronous commits, immediate (write-locking) transactions so that
// concurrent writers, in this process or another, serialize.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies pending schema migrations.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("opening SQLite store: path %q must not contain '?' or '#'", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening SQLite store: %w", err)
		}
	}
	// The database holds sealed keys, nonces and the audit log: owner only.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	dsn := "file:" + path + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, unavailable("opening SQLite store", err)
	}
	s := &SQLite{db: db}
	if err := migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening SQLite store %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Ping checks that the database answers a query.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return unavailable("pinging SQLite store", err)
	}
	return nil
}

// tx runs f in one transaction, committing when it returns nil and rolling
// back otherwise. Errors from f are returned as they are; errors from the
// database itself match ErrUnavailable.
func (s *SQLite) tx(ctx context.Context, action string, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(action, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return unavailable(action, err)
	}
	return nil
}

// RedeemNonce records id until expires; a second redemption is
// ErrNonceReused.
func (s *SQLite) RedeemNonce(ctx context.Context, id []byte, expires time.Time) error {
	if len(id) == 0 {
		return errors.New("redeeming nonce: empty id")
	}
	res, err := s.db.ExecContext(ctx,
		"INSERT INTO nonces (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
		id, expires.UnixNano())
	if err != nil {
		return unavailable("redeeming nonce", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return unavailable("redeeming nonce", err)
	}
	if n == 0 {
		return fmt.Errorf("redeeming nonce: %w", ErrNonceReused)
	}
	return nil
}

// PruneNonces deletes nonces that expired before the given time.
func (s *SQLite) PruneNonces(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM nonces WHERE expires_at < ?", before.UnixNano())
	if err != nil {
		return 0, unavailable("pruning nonces", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, unavailable("pruning nonces", err)
	}
	return n, nil
}

// Secret returns the named secret, creating it on first use.
func (s *SQLite) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var value []byte
	err := s.tx(ctx, "loading secret "+name, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, "SELECT value FROM secrets WHERE name = ?", name).Scan(&value)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return unavailable("loading secret "+name, err)
		}
		v, err := create()
		if err != nil {
			return fmt.Errorf("creating secret %s: %w", name, err)
		}
		if len(v) == 0 {
			return fmt.Errorf("creating secret %s: empty value", name)
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
			name, v, time.Now().UnixNano()); err != nil {
			return unavailable("storing secret "+name, err)
		}
		value = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

const signingKeyColumns = "kid, alg, public_jwk, sealed_private, created_at, retired_at, expires_at"

// SigningKeys returns all stored signing keys, current first.
func (s *SQLite) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+signingKeyColumns+
		" FROM signing_keys ORDER BY retired_at IS NOT NULL, created_at DESC")
	if err != nil {
		return nil, unavailable("listing signing keys", err)
	}
	defer rows.Close()
	var keys []SigningKey
	for rows.Next() {
		var (
			k                  SigningKey
			created            int64
			retired, expiresAt sql.NullInt64
		)
		if err := rows.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.SealedPrivate, &created, &retired, &expiresAt); err != nil {
			return nil, unavailable("listing signing keys", err)
		}
		k.CreatedAt = fromNanos(created)
		if retired.Valid {
			k.RetiredAt = fromNanos(retired.Int64)
		}
		if expiresAt.Valid {
			k.ExpiresAt = fromNanos(expiresAt.Int64)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing signing keys", err)
	}
	return keys, nil
}

// RotateSigningKey makes next current if there is no current key or the
// current one is older than rotateBefore.
func (s *SQLite) RotateSigningKey(ctx context.Context, next SigningKey, rotateBefore, keepUntil time.Time) (bool, error) {
	if next.KID == "" || next.Alg == "" || len(next.PublicJWK) == 0 || len(next.SealedPrivate) == 0 {
		return false, errors.New("rotating signing key: incomplete key")
	}
	rotated := false
	err := s.tx(ctx, "rotating signing key", func(tx *sql.Tx) error {
		var (
			kid     string
			created int64
		)
		err := tx.QueryRowContext(ctx,
			"SELECT kid, created_at FROM signing_keys WHERE retired_at IS NULL").Scan(&kid, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			kid = ""
		case err != nil:
			return unavailable("rotating signing key", err)
		case !fromNanos(created).Before(rotateBefore):
			return nil // current key is fresh enough
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM signing_keys WHERE kid = ?", next.KID).Scan(&n); err != nil {
			return unavailable("rotating signing key", err)
		}
		if n > 0 {
			return fmt.Errorf("rotating signing key: key %s: %w", next.KID, ErrConflict)
		}
		if kid != "" {
			if _, err := tx.ExecContext(ctx,
				"UPDATE signing_keys SET retired_at = ?, expires_at = ? WHERE kid = ?",
				next.CreatedAt.UnixNano(), keepUntil.UnixNano(), kid); err != nil {
				return unavailable("retiring signing key", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO signing_keys ("+signingKeyColumns+") VALUES (?, ?, ?, ?, ?, NULL, NULL)",
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
func (s *SQLite) PruneSigningKeys(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx,
		"DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND expires_at < ?", before.UnixNano())
	if err != nil {
		return 0, unavailable("pruning signing keys", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, unavailable("pruning signing keys", err)
	}
	return n, nil
}

// RecordDocument stores a policy or reference values version.
func (s *SQLite) RecordDocument(ctx context.Context, d Document) error {
	if d.Kind == "" || d.SHA256 == "" {
		return errors.New("recording document: missing kind or digest")
	}
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO documents (kind, sha256, id, content, loaded_at) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (kind, sha256) DO UPDATE SET loaded_at = excluded.loaded_at, id = excluded.id`,
		string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano()); err != nil {
		return unavailable("recording document", err)
	}
	return nil
}

// Documents returns the recorded versions of one kind, newest first.
func (s *SQLite) Documents(ctx context.Context, kind DocumentKind) ([]Document, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT kind, sha256, id, content, loaded_at FROM documents WHERE kind = ? ORDER BY loaded_at DESC", string(kind))
	if err != nil {
		return nil, unavailable("listing documents", err)
	}
	defer rows.Close()
	var docs []Document
	for rows.Next() {
		var (
			d      Document
			k      string
			loaded int64
		)
		if err := rows.Scan(&k, &d.SHA256, &d.ID, &d.Content, &loaded); err != nil {
			return nil, unavailable("listing documents", err)
		}
		d.Kind = DocumentKind(k)
		d.LoadedAt = fromNanos(loaded)
		docs = append(docs, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing documents", err)
	}
	return docs, nil
}

// AppendAudit appends an audit record.
func (s *SQLite) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	reasons := r.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	rj, err := json.Marshal(reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO audit (at, event, outcome, tee, subject, token_id, policy_id, policy_sha256, remote, reasons)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Time.UnixNano(), r.Event, r.Outcome, r.TEE, r.Subject, r.TokenID, r.PolicyID, r.PolicySHA256, r.Remote, string(rj))
	if err != nil {
		return 0, unavailable("appending audit record", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, unavailable("appending audit record", err)
	}
	return id, nil
}

// AuditRecords returns up to limit records after afterID, oldest first.
func (s *SQLite) AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, event, outcome, tee, subject, token_id, policy_id, policy_sha256, remote, reasons
		 FROM audit WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, unavailable("listing audit records", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var (
			r       AuditRecord
			at      int64
			reasons string
		)
		if err := rows.Scan(&r.ID, &at, &r.Event, &r.Outcome, &r.TEE, &r.Subject, &r.TokenID,
			&r.PolicyID, &r.PolicySHA256, &r.Remote, &reasons); err != nil {
			return nil, unavailable("listing audit records", err)
		}
		r.Time = fromNanos(at)
		if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
			return nil, fmt.Errorf("listing audit records: record %d: %w", r.ID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing audit records", err)
	}
	return out, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
