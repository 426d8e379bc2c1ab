package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNotScrubbed means ReplaceSecret stored the new value but could not
// scrub the old one from the database's files.
var ErrNotScrubbed = errors.New("replaced secret not scrubbed")

// ReplaceSecret replaces the named secret's value old with new.
//
// The old value does not stay in the database files: the UPDATE runs with
// secure_delete on, so SQLite overwrites the old cell with zeros, and the
// WAL, whose frames still hold the page as it was, is then checkpointed
// and truncated. Copies made before (backups) are out of reach.
func (s *SQLite) ReplaceSecret(ctx context.Context, name string, old, new []byte) error {
	action := "replacing secret " + name
	if len(new) == 0 {
		return fmt.Errorf("%s: empty value", action)
	}
	err := s.write(ctx, action, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
			return unavailable(action, err)
		}
		res, err := tx.ExecContext(ctx, "UPDATE secrets SET value = ? WHERE name = ? AND value = ?", new, name, old)
		if _, perr := tx.ExecContext(ctx, "PRAGMA secure_delete = OFF"); err == nil {
			err = perr
		}
		if err != nil {
			return unavailable(action, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return unavailable(action, err)
		}
		if n == 1 {
			return nil
		}
		var exists int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM secrets WHERE name = ?", name).Scan(&exists); err != nil {
			return unavailable(action, err)
		}
		return replaceOutcome(action, exists)
	})
	if err != nil {
		return err
	}
	// The write connection, outside any transaction (database/sql hands it
	// over between the writer's batches).
	var busy, logFrames, checkpointed int
	if err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return fmt.Errorf("%s: truncating the WAL: %w", action, errors.Join(ErrNotScrubbed, err))
	}
	if busy != 0 {
		return fmt.Errorf("%s: truncating the WAL: blocked by a reader (%d of %d frames copied): %w",
			action, checkpointed, logFrames, ErrNotScrubbed)
	}
	return nil
}

// ReplaceSecret replaces the named secret's value old with new.
//
// PostgreSQL keeps the old row version in the table's file after the
// UPDATE; VACUUM FULL then rewrites the (small) table into a new file and
// drops the old one. The old value remains in WAL segments until they are
// recycled, and in backups and WAL archives: a secret that was ever stored
// in clear is to be replaced by a new value, not by the same one sealed.
func (s *Postgres) ReplaceSecret(ctx context.Context, name string, old, new []byte) error {
	action := "replacing secret " + name
	if len(new) == 0 {
		return fmt.Errorf("%s: empty value", action)
	}
	err := s.tx(ctx, action, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE secrets SET value = $1 WHERE name = $2 AND value = $3", new, name, old)
		if err != nil {
			return unavailable(action, err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var exists int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM secrets WHERE name = $1", name).Scan(&exists); err != nil {
			return unavailable(action, err)
		}
		return replaceOutcome(action, exists)
	})
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "VACUUM FULL secrets"); err != nil {
		return fmt.Errorf("%s: vacuuming the old value: %w", action, errors.Join(ErrNotScrubbed, err))
	}
	return nil
}

func replaceOutcome(action string, exists int) error {
	if exists == 0 {
		return fmt.Errorf("%s: %w", action, ErrNotFound)
	}
	return fmt.Errorf("%s: stored value changed: %w", action, ErrConflict)
}
