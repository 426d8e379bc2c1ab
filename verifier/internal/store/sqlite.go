package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
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
	// The store: db is the write connection (MaxOpenConns 1), used only
	// by the writer goroutine; rdb the read-only pool.
	*sqlStore
}

var _ Store = (*SQLite)(nil)

// DefaultSQLiteBusyTimeout is how long a write waits for another process
// that holds the database's write lock.
const DefaultSQLiteBusyTimeout = 10 * time.Second

// sqliteDialect is SQLite's SQL: ? placeholders, no row locks (a write
// transaction is IMMEDIATE: it holds the write lock from its start).
func sqliteDialect() *dialect {
	return &dialect{
		name:     "SQLite",
		scrubOn:  "PRAGMA secure_delete = ON",
		scrubOff: "PRAGMA secure_delete = OFF",
		scrub:    sqliteTruncateWAL,
		types:    strings.NewReplacer("{bytes}", "BLOB", "{int64}", "INTEGER"),
	}
}

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
	s, err := newSQLStore(ctx, sqliteDialect(), db, rdb, true, 0)
	if err != nil {
		rdb.Close()
		db.Close()
		return nil, err
	}
	return &SQLite{s}, nil
}

// sqliteTruncateWAL checkpoints the WAL into the database file and
// truncates it, on the write connection, outside any transaction
// (database/sql hands it over between the writer's batches).
func sqliteTruncateWAL(ctx context.Context, db *sql.DB) error {
	var busy, logFrames, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return fmt.Errorf("truncating the WAL: %w", errors.Join(ErrNotScrubbed, err))
	}
	if busy != 0 {
		return fmt.Errorf("truncating the WAL: blocked by a reader (%d of %d frames copied): %w",
			checkpointed, logFrames, ErrNotScrubbed)
	}
	return nil
}

// SQLite primary result codes of the conditions diskCondition reports.
const (
	sqliteReadOnly = 8  // SQLITE_READONLY
	sqliteFull     = 13 // SQLITE_FULL
)

// sqliteCondition returns ErrFull or ErrReadOnly when err is SQLite's
// saying so, nil otherwise.
func sqliteCondition(err error) error {
	var sq *sqlite.Error
	if !errors.As(err, &sq) {
		return nil
	}
	switch sq.Code() & 0xff { // the primary code of an extended one
	case sqliteFull:
		return ErrFull
	case sqliteReadOnly:
		return ErrReadOnly
	}
	return nil
}
