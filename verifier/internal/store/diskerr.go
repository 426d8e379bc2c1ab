package store

import (
	"errors"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Conditions of an unavailable store that an operator fixes, not a retry;
// an ErrUnavailable error matches one of them when the database said so.
var (
	// ErrFull means the store's disk (or the database's quota) is full.
	ErrFull = errors.New("the store's disk is full")
	// ErrReadOnly means the store's file system or database is read-only.
	ErrReadOnly = errors.New("the store is read-only")
)

// SQLite primary result codes and PostgreSQL SQLSTATEs of those conditions.
const (
	sqliteReadOnly = 8  // SQLITE_READONLY
	sqliteFull     = 13 // SQLITE_FULL
	pgDiskFull     = "53100"
	pgReadOnlyTx   = "25006"
)

// diskCondition returns ErrFull or ErrReadOnly when err says the disk is
// full or read-only, nil otherwise.
func diskCondition(err error) error {
	var (
		sq *sqlite.Error
		pg *pgconn.PgError
	)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrFull
	case errors.Is(err, syscall.EROFS):
		return ErrReadOnly
	case errors.As(err, &sq):
		switch sq.Code() & 0xff { // the primary code of an extended one
		case sqliteFull:
			return ErrFull
		case sqliteReadOnly:
			return ErrReadOnly
		}
	case errors.As(err, &pg):
		switch pg.Code {
		case pgDiskFull:
			return ErrFull
		case pgReadOnlyTx:
			return ErrReadOnly
		}
	}
	return nil
}
