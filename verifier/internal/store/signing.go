package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SigningKeys returns all stored signing keys, current first.
func (s *sqlStore) SigningKeys(ctx context.Context) ([]SigningKey, error) {
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
func (s *sqlStore) RotateSigningKey(ctx context.Context, next SigningKey, rotateBefore, keepUntil time.Time) (bool, error) {
	if next.KID == "" || next.Alg == "" || len(next.PublicJWK) == 0 || len(next.SealedPrivate) == 0 {
		return false, errors.New("rotating signing key: incomplete key")
	}
	rotated := false
	err := s.update(ctx, "rotating signing key", func(ctx context.Context, tx *sql.Tx) error {
		if s.d.lockSigningKeys != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockSigningKeys); err != nil {
				return unavailable("rotating signing key", err)
			}
		}
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
		if err := tx.QueryRowContext(ctx, s.d.q("SELECT count(*) FROM signing_keys WHERE kid = ?"), next.KID).Scan(&n); err != nil {
			return unavailable("rotating signing key", err)
		}
		if n > 0 {
			return fmt.Errorf("rotating signing key: key %s: %w", next.KID, ErrConflict)
		}
		if kid != "" {
			if _, err := tx.ExecContext(ctx, s.d.q("UPDATE signing_keys SET retired_at = ?, expires_at = ? WHERE kid = ?"),
				next.CreatedAt.UnixNano(), keepUntil.UnixNano(), kid); err != nil {
				return unavailable("retiring signing key", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO signing_keys ("+signingKeyColumns+") VALUES (?, ?, ?, ?, ?, NULL, NULL)"),
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
func (s *sqlStore) PruneSigningKeys(ctx context.Context, before time.Time) (int64, error) {
	return s.exec(ctx, "pruning signing keys",
		"DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND expires_at < ?", before.UnixNano())
}
