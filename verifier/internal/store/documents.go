package store

import (
	"context"
	"database/sql"
	"errors"
)

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
