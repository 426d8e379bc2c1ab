package store

import "fmt"

// The tables both databases create alike, written once; each database's
// migrations (sqlite_schema.go, postgres_schema.go) say when. Type words,
// replaced by dialect.ddl: {bytes} is a byte string (SQLite BLOB,
// PostgreSQL BYTEA), {int64} a 64-bit integer (INTEGER, BIGINT).
const (
	ddlSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at {int64} NOT NULL
	)`
	ddlNonces = `CREATE TABLE nonces (
		id {bytes} PRIMARY KEY,
		expires_at {int64} NOT NULL
	)`
	ddlNoncesIndex = `CREATE INDEX nonces_expires_at ON nonces (expires_at)`
	ddlSecrets     = `CREATE TABLE secrets (
		name TEXT PRIMARY KEY,
		value {bytes} NOT NULL,
		created_at {int64} NOT NULL
	)`
	ddlSigningKeys = `CREATE TABLE signing_keys (
		kid TEXT PRIMARY KEY,
		alg TEXT NOT NULL,
		public_jwk {bytes} NOT NULL,
		sealed_private {bytes} NOT NULL,
		created_at {int64} NOT NULL,
		retired_at {int64},
		expires_at {int64},
		CHECK ((retired_at IS NULL) = (expires_at IS NULL))
	)`
	// At most one current key.
	ddlOneCurrentKey = `CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL`
	ddlDocuments     = `CREATE TABLE documents (
		kind TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		id TEXT NOT NULL,
		content {bytes} NOT NULL,
		loaded_at {int64} NOT NULL,
		PRIMARY KEY (kind, sha256)
	)`
	ddlAuditIndex = `CREATE INDEX audit_at ON audit (at)`
	ddlAuditHead  = `CREATE TABLE audit_head (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		last_id {int64} NOT NULL,
		last_hash {bytes} NOT NULL
	)`
	ddlReleaseKeys = `CREATE TABLE release_keys (
		name TEXT PRIMARY KEY,
		origin TEXT NOT NULL CHECK (origin IN ('platform', 'customer')),
		policy {bytes} NOT NULL,
		policy_sha256 TEXT NOT NULL,
		created_at {int64} NOT NULL,
		updated_at {int64} NOT NULL,
		next_version INTEGER NOT NULL
	)`
)

// ddlAudit is the audit table: id defines its id column, more (if any)
// the columns after reasons.
func ddlAudit(id, more string) string {
	return fmt.Sprintf(`CREATE TABLE audit (
		%s,
		at {int64} NOT NULL,
		event TEXT NOT NULL,
		outcome TEXT NOT NULL,
		tee TEXT NOT NULL,
		subject TEXT NOT NULL,
		token_id TEXT NOT NULL,
		policy_id TEXT NOT NULL,
		policy_sha256 TEXT NOT NULL,
		remote TEXT NOT NULL,
		reasons TEXT NOT NULL%s
	)`, id, more)
}

// ddlReleaseKeyVersions is the table of release key versions; onDelete
// is what the reference to the key adds, if anything.
func ddlReleaseKeyVersions(onDelete string) string {
	return fmt.Sprintf(`CREATE TABLE release_key_versions (
		name TEXT NOT NULL REFERENCES release_keys (name)%s,
		version INTEGER NOT NULL,
		sealed {bytes} NOT NULL,
		kek_id TEXT NOT NULL,
		created_at {int64} NOT NULL,
		PRIMARY KEY (name, version)
	)`, onDelete)
}

// ddlActiveDocuments is the table of the active document of each slot;
// more (if any) adds constraints.
func ddlActiveDocuments(more string) string {
	return fmt.Sprintf(`CREATE TABLE active_documents (
		slot TEXT PRIMARY KEY,
		kind TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		activated_at {int64} NOT NULL%s
	)`, more)
}
