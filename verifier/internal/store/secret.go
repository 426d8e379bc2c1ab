package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNotScrubbed means ReplaceSecret stored the new value but could not
// scrub the old one from the database's files.
var ErrNotScrubbed = errors.New("replaced secret not scrubbed")

// Secret returns the named secret, creating it on first use; concurrent
// first uses in several processes all get the value that was stored first.
func (s *sqlStore) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var value []byte
	load := s.d.q("SELECT value FROM secrets WHERE name = ?")
	err := s.update(ctx, "loading secret "+name, func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, load, name).Scan(&value)
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
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"),
			name, v, time.Now().UnixNano()); err != nil {
			return unavailable("storing secret "+name, err)
		}
		// Another process may have won: read what is stored.
		if err := tx.QueryRowContext(ctx, load, name).Scan(&value); err != nil {
			return unavailable("loading secret "+name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

// ReplaceSecret replaces the named secret's value old with new, then
// scrubs the old value from the database's files:
//
// SQLite: the UPDATE runs with secure_delete on, so SQLite overwrites the
// old cell with zeros, and the WAL, whose frames still hold the page as it
// was, is then checkpointed and truncated.
//
// PostgreSQL keeps the old row version in the table's file after the
// UPDATE; VACUUM FULL then rewrites the (small) table into a new file and
// drops the old one. The old value remains in WAL segments until they are
// recycled.
//
// Copies made before (backups, WAL archives) are out of reach: a secret
// that was ever stored in clear is to be replaced by a new value, not by
// the same one sealed.
func (s *sqlStore) ReplaceSecret(ctx context.Context, name string, old, new []byte) error {
	action := "replacing secret " + name
	if len(new) == 0 {
		return fmt.Errorf("%s: empty value", action)
	}
	err := s.update(ctx, action, func(ctx context.Context, tx *sql.Tx) error {
		n, err := s.replaceValue(ctx, tx, name, old, new)
		if err != nil {
			return unavailable(action, err)
		}
		if n == 1 {
			return nil
		}
		var exists int
		if err := tx.QueryRowContext(ctx, s.d.q("SELECT count(*) FROM secrets WHERE name = ?"), name).Scan(&exists); err != nil {
			return unavailable(action, err)
		}
		if exists == 0 {
			return fmt.Errorf("%s: %w", action, ErrNotFound)
		}
		return fmt.Errorf("%s: stored value changed: %w", action, ErrConflict)
	})
	if err != nil {
		return err
	}
	if err := s.d.scrub(ctx, s.db); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return nil
}

// replaceValue updates the secret's value if it is old (between the
// dialect's scrubOn and scrubOff) and returns the rows it changed.
func (s *sqlStore) replaceValue(ctx context.Context, tx *sql.Tx, name string, old, new []byte) (int64, error) {
	if s.d.scrubOn != "" {
		if _, err := tx.ExecContext(ctx, s.d.scrubOn); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, s.d.q("UPDATE secrets SET value = ? WHERE name = ? AND value = ?"), new, name, old)
	if s.d.scrubOff != "" {
		if _, perr := tx.ExecContext(ctx, s.d.scrubOff); err == nil {
			err = perr
		}
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
