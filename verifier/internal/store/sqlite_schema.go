package store

import (
	"context"
	"database/sql"
)

// migrations is the SQLite schema history. Append only: never edit an
// applied version, add a new one.
var migrations = []migration{
	{version: 1, stmts: sqliteDialect().ddl(ddlNonces, ddlNoncesIndex, ddlSecrets, ddlSigningKeys, ddlOneCurrentKey,
		ddlDocuments, ddlAudit("id INTEGER PRIMARY KEY AUTOINCREMENT", ""), ddlAuditIndex)},
	// 2: release keys, active documents, audit key fields and hash chain.
	{version: 2, stmts: sqliteDialect().ddl(
		ddlReleaseKeys,
		ddlReleaseKeyVersions(""),
		ddlActiveDocuments(""),
		`ALTER TABLE audit ADD COLUMN key_name TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE audit ADD COLUMN prev_hash BLOB`,
		ddlAuditHead,
	), fn: chainLegacyAudit},
}

// chainLegacyAudit links the audit records written before the chain
// existed, oldest first, and writes the head.
func chainLegacyAudit(ctx context.Context, tx *sql.Tx) error {
	recs, err := scanAudit(tx.QueryContext(ctx, "SELECT "+auditColumns+" FROM audit ORDER BY id"))
	if err != nil {
		return err
	}
	prev, last := GenesisHash(), int64(0)
	for i := range recs {
		r := &recs[i]
		r.PrevHash = prev
		if _, err := tx.ExecContext(ctx, "UPDATE audit SET prev_hash = ? WHERE id = ?", prev, r.ID); err != nil {
			return err
		}
		prev, last = r.Hash(), r.ID
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)", last, prev)
	return err
}
