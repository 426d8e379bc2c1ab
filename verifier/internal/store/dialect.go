package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// dialect is what one database spells its own way: placeholders, row
// locks, the statements that serialize writers across processes, type
// names in the schema, and how a replaced secret leaves the files.
// Everything else (the business rules) is sqlStore's, written once, in SQL
// with ? placeholders.
type dialect struct {
	// name names the database in messages ("SQLite", "PostgreSQL").
	name string
	// numbered: placeholders are $1, $2, ... (PostgreSQL), not ?.
	numbered bool
	// rowLocks: SELECT ... FOR UPDATE locks the rows a transaction is
	// about to change (PostgreSQL, at READ COMMITTED). Without it (SQLite)
	// a write transaction holds the database's write lock from its start
	// (BEGIN IMMEDIATE) and needs no row locks.
	rowLocks bool
	// withWrites: a WITH clause may hold an INSERT (PostgreSQL), so that
	// two writes go to the database in one statement (one round trip).
	withWrites bool
	// lockSigningKeys and lockSchema, when set, lock signing key rotation
	// and schema migration across processes until the transaction ends.
	lockSigningKeys, lockSchema string
	// scrubOn and scrubOff, when set, run around an UPDATE of a secret so
	// that the database overwrites the old value in its file.
	scrubOn, scrubOff string
	// scrub, run on the write pool outside any transaction after a secret
	// was replaced, removes what remains of the old value from the
	// database's files; its error matches ErrNotScrubbed.
	scrub func(ctx context.Context, db *sql.DB) error
	// types replaces the type words of the schema: {bytes} (a byte
	// string) and {int64} (a 64-bit integer).
	types *strings.Replacer
}

// q returns query with its ? placeholders in the database's style. No
// query of this package holds a ? inside a literal.
func (d *dialect) q(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, c := range []byte(query) {
		if c != '?' {
			b.WriteByte(c)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// forUpdate returns query (a SELECT) so that it locks the rows it reads,
// where rows lock.
func (d *dialect) forUpdate(query string) string {
	if d.rowLocks {
		return query + " FOR UPDATE"
	}
	return query
}

// ddl returns schema statements with the database's type names.
func (d *dialect) ddl(stmts ...string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = d.types.Replace(s)
	}
	return out
}

// stmt is a statement of the hot path (nonce redemption, audit append).
// Where one write connection serves the process (SQLite) it is prepared on
// it once; pgx prepares and caches statements per connection by itself,
// so there it is its text.
type stmt struct {
	text string
	// nargs is how many arguments it takes.
	nargs int
	prep  *sql.Stmt
}

func (st stmt) exec(ctx context.Context, tx *sql.Tx, args ...any) (sql.Result, error) {
	if st.prep != nil {
		return tx.StmtContext(ctx, st.prep).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, st.text, args...)
}

func (st stmt) queryRow(ctx context.Context, tx *sql.Tx, args ...any) *sql.Row {
	if st.prep != nil {
		return tx.StmtContext(ctx, st.prep).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, st.text, args...)
}

// Statements of the hot path, in ? style.
const (
	insertNonceSQL = "INSERT INTO nonces (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
	selectHeadSQL  = "SELECT last_id, last_hash FROM audit_head WHERE id = 1"
	insertAuditSQL = "INSERT INTO audit (" + auditColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	updateHeadSQL  = "UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1"
)

// hotStatements are the statements of the hot path in a database's words.
type hotStatements struct {
	insertNonce stmt
	// lockHead locks the audit head; only where rows lock.
	lockHead stmt
	// selectHead reads the audit head, locking it where rows lock.
	selectHead stmt
	// appendAudit inserts an audit record (auditColumns) and moves the head
	// to it (its id and hash): run in order, each taking its nargs of the
	// arguments. Two statements, or one where a WITH may write.
	appendAudit []stmt
}

// newHotStatements writes the hot path's statements for d, prepared on db
// unless db is nil.
func newHotStatements(ctx context.Context, d *dialect, db *sql.DB) (hotStatements, error) {
	mk := func(query string) stmt {
		return stmt{text: d.q(query), nargs: strings.Count(query, "?")}
	}
	h := hotStatements{
		insertNonce: mk(insertNonceSQL),
		selectHead:  mk(d.forUpdate(selectHeadSQL)),
		appendAudit: []stmt{mk(insertAuditSQL), mk(updateHeadSQL)},
	}
	if d.rowLocks {
		h.lockHead = mk(d.forUpdate("SELECT 1 FROM audit_head WHERE id = 1"))
	}
	if d.withWrites {
		h.appendAudit = []stmt{mk("WITH a AS (" + insertAuditSQL + ") " + updateHeadSQL)}
	}
	if db == nil {
		return h, nil
	}
	for _, st := range h.all() {
		p, err := db.PrepareContext(ctx, st.text)
		if err != nil {
			h.close()
			return hotStatements{}, err
		}
		st.prep = p
	}
	return h, nil
}

// all lists the statements, for preparing and closing them.
func (h *hotStatements) all() []*stmt {
	out := []*stmt{&h.insertNonce, &h.selectHead}
	if h.lockHead.text != "" {
		out = append(out, &h.lockHead)
	}
	for i := range h.appendAudit {
		out = append(out, &h.appendAudit[i])
	}
	return out
}

// close closes the prepared statements.
func (h *hotStatements) close() error {
	var errs []error
	for _, st := range h.all() {
		if st.prep != nil {
			errs = append(errs, st.prep.Close())
		}
	}
	return errors.Join(errs...)
}
