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

// upsertDocumentSQL records a document, or updates LoadedAt (and the ID)
// of one recorded before.
const upsertDocumentSQL = `INSERT INTO documents (` + documentColumns + `) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (kind, sha256) DO UPDATE SET loaded_at = excluded.loaded_at, id = excluded.id`

// RecordDocument stores a policy or reference values version.
func (s *sqlStore) RecordDocument(ctx context.Context, d Document) error {
	if d.Kind == "" || d.SHA256 == "" {
		return errors.New("recording document: missing kind or digest")
	}
	_, err := s.exec(ctx, "recording document", upsertDocumentSQL,
		string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano())
	return err
}

// Documents returns the recorded versions of one kind, newest first.
func (s *sqlStore) Documents(ctx context.Context, kind DocumentKind) ([]Document, error) {
	rows, err := s.rdb.QueryContext(ctx,
		s.d.q("SELECT "+documentColumns+" FROM documents WHERE kind = ? ORDER BY loaded_at DESC"), string(kind))
	if err != nil {
		return nil, unavailable("listing documents", err)
	}
	defer rows.Close()
	return scanAll("listing documents", rows, scanDocument)
}

// ActivateDocument records d and makes it the active document of slot.
func (s *sqlStore) ActivateDocument(ctx context.Context, slot string, d Document) error {
	if slot == "" || d.Kind == "" || d.SHA256 == "" {
		return errors.New("activating document: missing slot, kind or digest")
	}
	return s.update(ctx, "activating document", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.d.q(upsertDocumentSQL),
			string(d.Kind), d.SHA256, d.ID, d.Content, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		if _, err := tx.ExecContext(ctx,
			s.d.q(`INSERT INTO active_documents (slot, kind, sha256, activated_at) VALUES (?, ?, ?, ?)
			 ON CONFLICT (slot) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, activated_at = excluded.activated_at`),
			slot, string(d.Kind), d.SHA256, d.LoadedAt.UnixNano()); err != nil {
			return unavailable("activating document", err)
		}
		return nil
	})
}

// ActiveDocuments returns the active document of every slot.
func (s *sqlStore) ActiveDocuments(ctx context.Context) (map[string]Document, error) {
	rows, err := s.rdb.QueryContext(ctx, activeDocumentsQuery)
	if err != nil {
		return nil, unavailable("listing active documents", err)
	}
	defer rows.Close()
	return activeDocuments(rows)
}
