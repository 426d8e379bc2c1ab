package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	// The pure-Go SQLite driver, registered as "sqlite".
	_ "modernc.org/sqlite"
)

// SQLite is the embedded Store: one database file in WAL mode.
//
// Reads run on a pool of read-only connections; in WAL mode they never wait
// for a write. Writes go through one writer goroutine (see writer) that
// owns the only write connection of the process and commits the writes
// waiting at that moment together, in one IMMEDIATE transaction. So
// concurrent writes in this process queue in Go instead of meeting
// SQLITE_BUSY, and N of them cost one commit and one fsync.
//
// Durability: synchronous=FULL. A write returns only after its commit
// reached the disk, so neither a crash of the process nor a power loss can
// forget a redeemed nonce or an audit record that a caller was told about.
// Other processes sharing the file take the write lock in turn (busy
// timeout DefaultSQLiteBusyTimeout).
type SQLite struct {
	// db is the write connection (MaxOpenConns 1); after OpenSQLite only
	// the writer goroutine uses it.
	db *sql.DB
	// rdb is the read-only pool.
	rdb *sql.DB
	// Statements of the hot path, prepared on db.
	insNonce, selHead, insAudit, updHead *sql.Stmt

	w         *writer[*sql.Tx]
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*SQLite)(nil)

// DefaultSQLiteBusyTimeout is how long a write waits for another process
// that holds the database's write lock.
const DefaultSQLiteBusyTimeout = 10 * time.Second

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
	busy := fmt.Sprintf("_busy_timeout=%d", DefaultSQLiteBusyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", "file:"+path+"?"+busy+"&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_txlock=immediate")
	if err != nil {
		return nil, unavailable("opening SQLite store", err)
	}
	// One write connection, kept open for the life of the store.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := migrate(ctx, db, migrations); err != nil {
		db.Close()
		// SQLite says only "unable to open" (SQLITE_CANTOPEN) when its
		// WAL files cannot be made: ask the file system why.
		if errors.Is(err, ErrUnavailable) && diskCondition(err) == nil {
			if cond := diskCondition(syscall.Access(filepath.Dir(path), 2 /* W_OK */)); cond != nil {
				err = errors.Join(cond, err)
			}
		}
		return nil, fmt.Errorf("opening SQLite store %s: %w", path, err)
	}
	// Readers see the journal mode the writer set (it is stored in the
	// file) and cannot write.
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+busy+"&_query_only=1")
	if err != nil {
		db.Close()
		return nil, unavailable("opening SQLite store", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	s := &SQLite{db: db, rdb: rdb}
	for _, p := range []struct {
		stmt **sql.Stmt
		q    string
	}{
		{&s.insNonce, sqliteInsertNonce},
		{&s.selHead, sqliteSelectHead},
		{&s.insAudit, sqliteInsertAudit},
		{&s.updHead, sqliteUpdateHead},
	} {
		if *p.stmt, err = db.PrepareContext(ctx, p.q); err != nil {
			rdb.Close()
			db.Close()
			return nil, unavailable("opening SQLite store: preparing statements", err)
		}
	}
	s.w = startWriter(func(ctx context.Context) (batch[*sql.Tx], error) {
		tx, err := db.BeginTx(ctx, nil)
		return sqliteBatch{tx}, err
	}, 0)
	return s, nil
}

// sqliteBatch is the transaction of a batch of writes.
type sqliteBatch struct{ t *sql.Tx }

func (b sqliteBatch) tx() *sql.Tx { return b.t }

func (b sqliteBatch) savepoint(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "SAVEPOINT w")
	return err
}

func (b sqliteBatch) release(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "RELEASE w")
	return err
}

func (b sqliteBatch) rollbackTo(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "ROLLBACK TO w")
	return err
}

func (b sqliteBatch) commit(context.Context) error   { return b.t.Commit() }
func (b sqliteBatch) rollback(context.Context) error { return b.t.Rollback() }

// Statements of the hot path.
const (
	sqliteInsertNonce = "INSERT INTO nonces (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
	sqliteSelectHead  = "SELECT last_id, last_hash FROM audit_head WHERE id = 1"
	sqliteInsertAudit = "INSERT INTO audit (" + auditColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	sqliteUpdateHead  = "UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1"
)

// Close stops the writer (after the writes it holds) and closes the
// database. Writes and reads after Close fail with ErrUnavailable.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		s.w.close()
		var errs []error
		for _, st := range []*sql.Stmt{s.insNonce, s.selHead, s.insAudit, s.updHead} {
			errs = append(errs, st.Close())
		}
		s.closeErr = errors.Join(append(errs, s.rdb.Close(), s.db.Close())...)
	})
	return s.closeErr
}

// Ping checks that the database answers a query.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return unavailable("pinging SQLite store", err)
	}
	return nil
}

// write runs fn in the writer's transaction (see writer.write).
func (s *SQLite) write(ctx context.Context, action string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.w.write(ctx, action, fn)
}

// readTx runs f in one read-only transaction on the read pool: its
// queries see one snapshot.
func (s *SQLite) readTx(ctx context.Context, action string, f func(*sql.Tx) error) error {
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(action, err)
	}
	defer func() { _ = tx.Rollback() }()
	return f(tx)
}

// RedeemNonce records id until expires; a second redemption is
// ErrNonceReused.
func (s *SQLite) RedeemNonce(ctx context.Context, id []byte, expires time.Time) error {
	if len(id) == 0 {
		return errors.New("redeeming nonce: empty id")
	}
	return s.write(ctx, "redeeming nonce", func(ctx context.Context, tx *sql.Tx) error {
		return s.redeemNonce(ctx, tx, id, expires)
	})
}

func (s *SQLite) redeemNonce(ctx context.Context, tx *sql.Tx, id []byte, expires time.Time) error {
	res, err := tx.StmtContext(ctx, s.insNonce).ExecContext(ctx, id, expires.UnixNano())
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

// RedeemNonceWithAudit redeems the nonce and appends r in one transaction.
func (s *SQLite) RedeemNonceWithAudit(ctx context.Context, id []byte, expires time.Time, r AuditRecord) (int64, error) {
	if len(id) == 0 {
		return 0, errors.New("redeeming nonce: empty id")
	}
	r.normalize()
	rj, err := json.Marshal(r.Reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	err = s.write(ctx, "redeeming nonce and appending audit record", func(ctx context.Context, tx *sql.Tx) error {
		if err := s.redeemNonce(ctx, tx, id, expires); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, &r, rj)
	})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// exec runs one writing statement and returns the rows it affected.
func (s *SQLite) exec(ctx context.Context, action, query string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, action, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return unavailable(action, err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return unavailable(action, err)
		}
		return nil
	})
	return n, err
}

// PruneNonces deletes nonces that expired before the given time.
func (s *SQLite) PruneNonces(ctx context.Context, before time.Time) (int64, error) {
	return s.exec(ctx, "pruning nonces", "DELETE FROM nonces WHERE expires_at < ?", before.UnixNano())
}

// Secret returns the named secret, creating it on first use.
func (s *SQLite) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var value []byte
	err := s.write(ctx, "loading secret "+name, func(ctx context.Context, tx *sql.Tx) error {
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

// SigningKeys returns all stored signing keys, current first.
func (s *SQLite) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT "+signingKeyColumns+
		" FROM signing_keys ORDER BY retired_at IS NOT NULL, created_at DESC")
	if err != nil {
		return nil, unavailable("listing signing keys", err)
	}
	defer rows.Close()
	return scanAll("listing signing keys", rows, scanSigningKey)
}

// RotateSigningKey makes next current if there is no current key or the
// current one is older than rotateBefore.
func (s *SQLite) RotateSigningKey(ctx context.Context, next SigningKey, rotateBefore, keepUntil time.Time) (bool, error) {
	if next.KID == "" || next.Alg == "" || len(next.PublicJWK) == 0 || len(next.SealedPrivate) == 0 {
		return false, errors.New("rotating signing key: incomplete key")
	}
	rotated := false
	err := s.write(ctx, "rotating signing key", func(ctx context.Context, tx *sql.Tx) error {
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
	return s.exec(ctx, "pruning signing keys",
		"DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND expires_at < ?", before.UnixNano())
}

// RecordDocument stores a policy or reference values version.
func (s *SQLite) RecordDocument(ctx context.Context, d Document) error {
	if d.Kind == "" || d.SHA256 == "" {
		return errors.New("recording document: missing kind or digest")
	}
	_, err := s.exec(ctx, "recording document",
		`INSERT INTO documents (`+documentColumns+`) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (kind, sha256) DO UPDATE SET loaded_at = excluded.loaded_at, id = excluded.id`,
		string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano())
	return err
}

// Documents returns the recorded versions of one kind, newest first.
func (s *SQLite) Documents(ctx context.Context, kind DocumentKind) ([]Document, error) {
	rows, err := s.rdb.QueryContext(ctx,
		"SELECT "+documentColumns+" FROM documents WHERE kind = ? ORDER BY loaded_at DESC", string(kind))
	if err != nil {
		return nil, unavailable("listing documents", err)
	}
	defer rows.Close()
	return scanAll("listing documents", rows, scanDocument)
}

// AppendAudit appends an audit record, chained to the one before it.
func (s *SQLite) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	r.normalize()
	rj, err := json.Marshal(r.Reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	err = s.write(ctx, "appending audit record", func(ctx context.Context, tx *sql.Tx) error {
		return s.appendAudit(ctx, tx, &r, rj)
	})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// appendAudit chains r (normalized; rj its reasons as JSON) to the head
// and stores it, setting r.ID and r.PrevHash.
func (s *SQLite) appendAudit(ctx context.Context, tx *sql.Tx, r *AuditRecord, rj []byte) error {
	var last int64
	var prev []byte
	if err := tx.StmtContext(ctx, s.selHead).QueryRowContext(ctx).Scan(&last, &prev); err != nil {
		return unavailable("appending audit record", err)
	}
	r.ID, r.PrevHash = last+1, prev
	if _, err := tx.StmtContext(ctx, s.insAudit).ExecContext(ctx,
		r.ID, r.Time.UnixNano(), r.Event, r.Outcome, r.TEE, r.Subject, r.TokenID, r.PolicyID, r.PolicySHA256,
		r.Remote, string(rj), r.KeyName, r.KeyVersion, r.PrevHash); err != nil {
		return unavailable("appending audit record", err)
	}
	if _, err := tx.StmtContext(ctx, s.updHead).ExecContext(ctx, r.ID, r.Hash()); err != nil {
		return unavailable("appending audit record", err)
	}
	return nil
}

// scanAudit reads the audit records a query returned.
func scanAudit(rows *sql.Rows, err error) ([]AuditRecord, error) {
	if err != nil {
		return nil, unavailable("listing audit records", err)
	}
	defer rows.Close()
	return scanAll("listing audit records", rows, scanAuditRow)
}

// AuditRecords returns up to limit records after afterID, oldest first.
func (s *SQLite) AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	return scanAudit(s.rdb.QueryContext(ctx, "SELECT "+auditColumns+" FROM audit WHERE id > ? ORDER BY id LIMIT ?", afterID, limit))
}

// AuditHead returns the last record's id and hash.
func (s *SQLite) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	if err := s.rdb.QueryRowContext(ctx, "SELECT last_id, last_hash FROM audit_head WHERE id = 1").Scan(&h.LastID, &h.Hash); err != nil {
		return AuditHead{}, unavailable("reading audit head", err)
	}
	return h, nil
}

// ActivateDocument records d and makes it the active document of slot.
func (s *SQLite) ActivateDocument(ctx context.Context, slot string, d Document) error {
	if slot == "" || d.Kind == "" || d.SHA256 == "" {
		return errors.New("activating document: missing slot, kind or digest")
	}
	return s.write(ctx, "activating document", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO documents (`+documentColumns+`) VALUES (?, ?, ?, ?, ?)
			 ON CONFLICT (kind, sha256) DO UPDATE SET loaded_at = excluded.loaded_at, id = excluded.id`,
			string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO active_documents (slot, kind, sha256, activated_at) VALUES (?, ?, ?, ?)
			 ON CONFLICT (slot) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, activated_at = excluded.activated_at`,
			slot, string(d.Kind), d.SHA256, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		return nil
	})
}

// ActiveDocuments returns the active document of every slot.
func (s *SQLite) ActiveDocuments(ctx context.Context) (map[string]Document, error) {
	rows, err := s.rdb.QueryContext(ctx, activeDocumentsQuery)
	if err != nil {
		return nil, unavailable("listing active documents", err)
	}
	defer rows.Close()
	return activeDocuments(rows)
}

// CreateReleaseKey stores a new key with its first version.
func (s *SQLite) CreateReleaseKey(ctx context.Context, k ReleaseKey, first ReleaseKeyVersion) error {
	if err := checkNewKey(k, first); err != nil {
		return err
	}
	return s.write(ctx, "creating release key", func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM release_keys WHERE name = ?", k.Name).Scan(&n); err != nil {
			return unavailable("creating release key", err)
		}
		if n > 0 {
			return fmt.Errorf("creating release key %s: %w", k.Name, ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO release_keys (name, origin, policy, policy_sha256, created_at, updated_at, next_version)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, k.Name, k.Origin, k.Policy, k.PolicySHA256, k.CreatedAt.UnixNano(),
			k.CreatedAt.UnixNano(), first.Version+1); err != nil {
			return unavailable("creating release key", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO release_key_versions (name, version, sealed, kek_id, created_at)
			VALUES (?, ?, ?, ?, ?)`, k.Name, first.Version, first.Sealed, first.KEKID, first.CreatedAt.UnixNano()); err != nil {
			return unavailable("creating release key", err)
		}
		return nil
	})
}

// RotateReleaseKey adds a version to the named key.
func (s *SQLite) RotateReleaseKey(ctx context.Context, name string, at time.Time, seal func(version int) (ReleaseKeyVersion, error)) (int, error) {
	var version int
	err := s.write(ctx, "rotating release key", func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, "SELECT next_version FROM release_keys WHERE name = ?", name).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO release_key_versions (name, version, sealed, kek_id, created_at)
			VALUES (?, ?, ?, ?, ?)`, name, v.Version, v.Sealed, v.KEKID, v.CreatedAt.UnixNano()); err != nil {
			return unavailable("rotating release key", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE release_keys SET next_version = ?, updated_at = ? WHERE name = ?",
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
func (s *SQLite) DeleteReleaseKey(ctx context.Context, name string, version int) error {
	return s.write(ctx, "deleting release key", func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM release_key_versions WHERE name = ?", name).Scan(&n); err != nil {
			return unavailable("deleting release key", err)
		}
		var have int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM release_keys WHERE name = ?", name).Scan(&have); err != nil {
			return unavailable("deleting release key", err)
		}
		if have == 0 {
			return fmt.Errorf("deleting release key %s: %w", name, ErrNotFound)
		}
		if version == 0 {
			if _, err := tx.ExecContext(ctx, "DELETE FROM release_key_versions WHERE name = ?", name); err != nil {
				return unavailable("deleting release key", err)
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM release_keys WHERE name = ?", name); err != nil {
				return unavailable("deleting release key", err)
			}
			return nil
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM release_key_versions WHERE name = ? AND version = ?", name, version)
		if err != nil {
			return unavailable("deleting release key", err)
		}
		if d, err := res.RowsAffected(); err != nil {
			return unavailable("deleting release key", err)
		} else if d == 0 {
			return fmt.Errorf("deleting release key %s version %d: %w", name, version, ErrNotFound)
		}
		if n == 1 {
			return fmt.Errorf("deleting release key %s version %d: it is the only version; delete the key instead: %w", name, version, ErrConflict)
		}
		return nil
	})
}

// SetReleasePolicy replaces the release policy of the named key.
func (s *SQLite) SetReleasePolicy(ctx context.Context, name string, policy []byte, sha string, at time.Time) error {
	if len(policy) == 0 || sha == "" {
		return errors.New("setting release policy: empty policy")
	}
	n, err := s.exec(ctx, "setting release policy", "UPDATE release_keys SET policy = ?, policy_sha256 = ?, updated_at = ? WHERE name = ?",
		policy, sha, at.UnixNano(), name)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("setting release policy of %s: %w", name, ErrNotFound)
	}
	return nil
}

const releaseKeyColumns = "name, origin, policy, policy_sha256, created_at, updated_at"

func scanReleaseKey(row rowScanner) (ReleaseKey, error) {
	var (
		k                ReleaseKey
		created, updated int64
	)
	if err := row.Scan(&k.Name, &k.Origin, &k.Policy, &k.PolicySHA256, &created, &updated); err != nil {
		return k, err
	}
	k.CreatedAt, k.UpdatedAt = fromNanos(created), fromNanos(updated)
	return k, nil
}

// ReleaseKey returns the named key and one version (0: the latest).
func (s *SQLite) ReleaseKey(ctx context.Context, name string, version int) (ReleaseKey, ReleaseKeyVersion, error) {
	var (
		k  ReleaseKey
		v  ReleaseKeyVersion
		at int64
	)
	k, err := scanReleaseKey(s.rdb.QueryRowContext(ctx, "SELECT "+releaseKeyColumns+" FROM release_keys WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return k, v, fmt.Errorf("loading release key %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return k, v, unavailable("loading release key", err)
	}
	q := "SELECT version, sealed, kek_id, created_at FROM release_key_versions WHERE name = ? AND version = ?"
	args := []any{name, version}
	if version == 0 {
		q = "SELECT version, sealed, kek_id, created_at FROM release_key_versions WHERE name = ? ORDER BY version DESC LIMIT 1"
		args = args[:1]
	}
	err = s.rdb.QueryRowContext(ctx, q, args...).Scan(&v.Version, &v.Sealed, &v.KEKID, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return k, v, fmt.Errorf("loading release key %s version %d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return k, v, unavailable("loading release key", err)
	}
	v.CreatedAt = fromNanos(at)
	return k, v, nil
}

// ReleaseKeyInfo returns the named key with its versions' metadata.
func (s *SQLite) ReleaseKeyInfo(ctx context.Context, name string) (ReleaseKey, error) {
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
func (s *SQLite) ReleaseKeys(ctx context.Context) ([]ReleaseKey, error) {
	return s.releaseKeys(ctx, "")
}

func (s *SQLite) releaseKeys(ctx context.Context, name string) ([]ReleaseKey, error) {
	var keys []ReleaseKey
	err := s.readTx(ctx, "listing release keys", func(tx *sql.Tx) error {
		where, args := "", []any{}
		if name != "" {
			where, args = " WHERE name = ?", []any{name}
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+releaseKeyColumns+" FROM release_keys"+where+" ORDER BY name", args...)
		if err != nil {
			return unavailable("listing release keys", err)
		}
		idx := map[string]int{}
		for rows.Next() {
			k, err := scanReleaseKey(rows)
			if err != nil {
				rows.Close()
				return unavailable("listing release keys", err)
			}
			idx[k.Name] = len(keys)
			keys = append(keys, k)
		}
		if err := rows.Close(); err != nil {
			return unavailable("listing release keys", err)
		}
		rows, err = tx.QueryContext(ctx, "SELECT name, version, kek_id, created_at FROM release_key_versions"+where+" ORDER BY name, version", args...)
		if err != nil {
			return unavailable("listing release keys", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				n  string
				v  ReleaseKeyVersion
				at int64
			)
			if err := rows.Scan(&n, &v.Version, &v.KEKID, &at); err != nil {
				return unavailable("listing release keys", err)
			}
			v.CreatedAt = fromNanos(at)
			if i, ok := idx[n]; ok {
				keys[i].Versions = append(keys[i].Versions, v)
			}
		}
		if err := rows.Err(); err != nil {
			return unavailable("listing release keys", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// checkNewKey checks a key and its first version before they are stored.
func checkNewKey(k ReleaseKey, first ReleaseKeyVersion) error {
	var errs []error
	if k.Name == "" {
		errs = append(errs, errors.New("empty name"))
	}
	if k.Origin != OriginPlatform && k.Origin != OriginCustomer {
		errs = append(errs, fmt.Errorf("origin %q", k.Origin))
	}
	if len(k.Policy) == 0 || k.PolicySHA256 == "" {
		errs = append(errs, errors.New("no release policy"))
	}
	if first.Version != 1 || len(first.Sealed) == 0 {
		errs = append(errs, errors.New("the first version must be version 1 with sealed material"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creating release key: %w", err)
	}
	return nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
