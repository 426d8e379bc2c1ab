package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// sqlStore is the Store over database/sql, for every database: the
// business rules, written once; its dialect says how the database spells
// them, and the backend (SQLite, Postgres) sets up the connections.
//
// Nonce redemptions and audit appends go through the writer, batched
// (group commit): one transaction, one commit and one wait for the audit
// head for all the writes waiting at a time.
type sqlStore struct {
	d *dialect
	// db runs the writes; rdb the reads (the same pool on PostgreSQL).
	db, rdb *sql.DB
	// oneWriter: db is one connection that only the writer uses (SQLite):
	// every write goes through the writer, and the hot path's statements
	// are prepared on it once.
	oneWriter bool
	hot       hotStatements
	w         *writer[*sql.Tx]
	closeOnce sync.Once
	closeErr  error
}

// newSQLStore starts the store over db and rdb, whose schema is migrated;
// a batch of writes is bounded by writeTimeout (zero: no bound). Close
// closes db and rdb.
func newSQLStore(ctx context.Context, d *dialect, db, rdb *sql.DB, oneWriter bool, writeTimeout time.Duration) (*sqlStore, error) {
	prepareOn := db
	if !oneWriter {
		prepareOn = nil
	}
	hot, err := newHotStatements(ctx, d, prepareOn)
	if err != nil {
		return nil, unavailable(fmt.Sprintf("opening %s store: preparing statements", d.name), err)
	}
	s := &sqlStore{d: d, db: db, rdb: rdb, oneWriter: oneWriter, hot: hot}
	s.w = startWriter(s.beginBatch, writeTimeout)
	return s, nil
}

// Close stops the writer (after the writes it holds) and closes the
// database. Writes and reads after Close fail with ErrUnavailable.
func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		s.w.close()
		errs := []error{s.hot.close()}
		if s.rdb != s.db {
			errs = append(errs, s.rdb.Close())
		}
		s.closeErr = errors.Join(append(errs, s.db.Close())...)
	})
	return s.closeErr
}

// Ping checks that the database answers a query.
func (s *sqlStore) Ping(ctx context.Context) error {
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return unavailable("pinging "+s.d.name+" store", err)
	}
	return nil
}

// beginBatch starts the transaction of a batch of writes.
func (s *sqlStore) beginBatch(ctx context.Context) (batch[*sql.Tx], error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if s.d.rowLocks {
		// The audit head first: every batch takes its lock before any
		// other, so that the batches of several replicas never deadlock
		// (on a nonce one inserted and the head the other holds).
		if _, err := s.hot.lockHead.exec(ctx, tx); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	return sqlBatch{tx}, nil
}

// sqlBatch is the transaction of a batch of writes.
type sqlBatch struct{ t *sql.Tx }

func (b sqlBatch) tx() *sql.Tx { return b.t }

func (b sqlBatch) savepoint(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "SAVEPOINT w")
	return err
}

func (b sqlBatch) release(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "RELEASE SAVEPOINT w")
	return err
}

func (b sqlBatch) rollbackTo(ctx context.Context) error {
	_, err := b.t.ExecContext(ctx, "ROLLBACK TO SAVEPOINT w")
	return err
}

func (b sqlBatch) commit(context.Context) error   { return b.t.Commit() }
func (b sqlBatch) rollback(context.Context) error { return b.t.Rollback() }

// write runs fn in the writer's transaction (see writer.write).
func (s *sqlStore) write(ctx context.Context, action string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.w.write(ctx, action, fn)
}

// update runs fn in a write transaction: the writer's where it owns the
// only write connection, else one of its own (fn gets the ctx to use).
// Errors from fn are returned as they are; database errors match
// ErrUnavailable.
func (s *sqlStore) update(ctx context.Context, action string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if s.oneWriter {
		return s.write(ctx, action, fn)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(action, err)
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return unavailable(action, err)
	}
	return nil
}

// exec runs one writing statement (? placeholders) and returns the rows
// it affected.
func (s *sqlStore) exec(ctx context.Context, action, query string, args ...any) (int64, error) {
	var n int64
	err := s.update(ctx, action, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(query), args...)
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

// RedeemNonce records id until expires; a second redemption is
// ErrNonceReused.
func (s *sqlStore) RedeemNonce(ctx context.Context, id []byte, expires time.Time) error {
	if len(id) == 0 {
		return errors.New("redeeming nonce: empty id")
	}
	return s.write(ctx, "redeeming nonce", func(ctx context.Context, tx *sql.Tx) error {
		return s.redeemNonce(ctx, tx, id, expires)
	})
}

func (s *sqlStore) redeemNonce(ctx context.Context, tx *sql.Tx, id []byte, expires time.Time) error {
	res, err := s.hot.insertNonce.exec(ctx, tx, id, expires.UnixNano())
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
func (s *sqlStore) RedeemNonceWithAudit(ctx context.Context, id []byte, expires time.Time, r AuditRecord) (int64, error) {
	if len(id) == 0 {
		return 0, errors.New("redeeming nonce: empty id")
	}
	return s.appendAuditWith(ctx, "redeeming nonce and appending audit record", r,
		func(ctx context.Context, tx *sql.Tx) error { return s.redeemNonce(ctx, tx, id, expires) })
}

// PruneNonces deletes nonces that expired before the given time.
func (s *sqlStore) PruneNonces(ctx context.Context, before time.Time) (int64, error) {
	return s.exec(ctx, "pruning nonces", "DELETE FROM nonces WHERE expires_at < ?", before.UnixNano())
}

// AppendAudit appends an audit record, chained to the one before it.
// Where rows lock, the head's row lock serializes appends from every
// process; in this one, the writer batches them.
func (s *sqlStore) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	return s.appendAuditWith(ctx, "appending audit record", r, nil)
}

// appendAuditWith runs first (if any), then appends r, in one write of
// the writer, and returns r's id.
func (s *sqlStore) appendAuditWith(ctx context.Context, action string, r AuditRecord, first func(ctx context.Context, tx *sql.Tx) error) (int64, error) {
	r.normalize()
	rj, err := json.Marshal(r.Reasons)
	if err != nil {
		return 0, fmt.Errorf("appending audit record: %w", err)
	}
	err = s.write(ctx, action, func(ctx context.Context, tx *sql.Tx) error {
		if first != nil {
			if err := first(ctx, tx); err != nil {
				return err
			}
		}
		return s.appendAudit(ctx, tx, &r, rj)
	})
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// appendAudit chains r (normalized; rj its reasons as JSON) to the head,
// which it locks until tx ends where rows lock (a writer batch holds it
// already), and stores it, setting r.ID and r.PrevHash.
func (s *sqlStore) appendAudit(ctx context.Context, tx *sql.Tx, r *AuditRecord, rj []byte) error {
	var last int64
	var prev []byte
	if err := s.hot.selectHead.queryRow(ctx, tx).Scan(&last, &prev); err != nil {
		return unavailable("appending audit record", err)
	}
	r.ID, r.PrevHash = last+1, prev
	args := []any{r.ID, r.Time.UnixNano(), r.Event, r.Outcome, r.TEE, r.Subject, r.TokenID, r.PolicyID, r.PolicySHA256,
		r.Remote, string(rj), r.KeyName, r.KeyVersion, r.PrevHash, r.ID, r.Hash()}
	for _, st := range s.hot.appendAudit {
		if _, err := st.exec(ctx, tx, args[:st.nargs]...); err != nil {
			return unavailable("appending audit record", err)
		}
		args = args[st.nargs:]
	}
	return nil
}

// AuditRecords returns up to limit records after afterID, oldest first.
func (s *sqlStore) AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	return scanAudit(s.rdb.QueryContext(ctx, s.d.q("SELECT "+auditColumns+" FROM audit WHERE id > ? ORDER BY id LIMIT ?"), afterID, limit))
}

// scanAudit reads the audit records a query returned.
func scanAudit(rows *sql.Rows, err error) ([]AuditRecord, error) {
	if err != nil {
		return nil, unavailable("listing audit records", err)
	}
	defer rows.Close()
	return scanAll("listing audit records", rows, scanAuditRow)
}

// AuditHead returns the last record's id and hash.
func (s *sqlStore) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	if err := s.rdb.QueryRowContext(ctx, selectHeadSQL).Scan(&h.LastID, &h.Hash); err != nil {
		return AuditHead{}, unavailable("reading audit head", err)
	}
	return h, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
