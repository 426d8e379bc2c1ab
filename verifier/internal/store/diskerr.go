package store

import (
	"errors"
	"syscall"
)

// Conditions of an unavailable store that an operator fixes, not a retry;
// an ErrUnavailable error matches one of them when the database said so.
var (
	// ErrFull means the store's disk (or the database's quota) is full.
	ErrFull = errors.New("the store's disk is full")
	// ErrReadOnly means the store's file system or database is read-only.
	ErrReadOnly = errors.New("the store is read-only")
)

// diskCondition returns ErrFull or ErrReadOnly when err says the disk is
// full or read-only (the system or a database: sqliteCondition,
// pgCondition), nil otherwise.
func diskCondition(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrFull
	case errors.Is(err, syscall.EROFS):
		return ErrReadOnly
	}
	if cond := sqliteCondition(err); cond != nil {
		return cond
	}
	return pgCondition(err)
}
