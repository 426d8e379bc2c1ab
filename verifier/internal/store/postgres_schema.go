package store

// pgMigrations is the PostgreSQL schema history (its own numbering; the
// tables match SQLite's). Append only.
var pgMigrations = []migration{
	{version: 1, stmts: pgDialect().ddl(
		ddlNonces, ddlNoncesIndex, ddlSecrets, ddlSigningKeys, ddlOneCurrentKey, ddlDocuments,
		ddlActiveDocuments(",\n\t\tFOREIGN KEY (kind, sha256) REFERENCES documents (kind, sha256)"),
		ddlAudit("id BIGINT PRIMARY KEY",
			",\n\t\tkey_name TEXT NOT NULL DEFAULT '',\n\t\tkey_version INTEGER NOT NULL DEFAULT 0,\n\t\tprev_hash BYTEA"),
		ddlAuditIndex,
		ddlAuditHead,
		`INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')`,
		ddlReleaseKeys,
		ddlReleaseKeyVersions(" ON DELETE CASCADE"),
	)},
}
