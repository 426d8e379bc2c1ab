package store

import "encoding/json"

// rowScanner is one row of *sql.Rows or *sql.Row.
type rowScanner interface {
	Scan(dest ...any) error
}

// resultRows is what *sql.Rows offers for reading; the caller closes
// them.
type resultRows interface {
	rowScanner
	Next() bool
	Err() error
}

// scanAll reads every row of rows with scan. Any failure is ErrUnavailable
// for the action op.
func scanAll[T any](op string, rows resultRows, scan func(rowScanner) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, unavailable(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(op, err)
	}
	return out, nil
}

const signingKeyColumns = "kid, alg, public_jwk, sealed_private, created_at, retired_at, expires_at"

// scanSigningKey reads the signingKeyColumns of a row.
func scanSigningKey(row rowScanner) (SigningKey, error) {
	var (
		k                  SigningKey
		created            int64
		retired, expiresAt *int64
	)
	if err := row.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.SealedPrivate, &created, &retired, &expiresAt); err != nil {
		return k, err
	}
	k.CreatedAt = fromNanos(created)
	if retired != nil {
		k.RetiredAt = fromNanos(*retired)
	}
	if expiresAt != nil {
		k.ExpiresAt = fromNanos(*expiresAt)
	}
	return k, nil
}

const documentColumns = "kind, sha256, id, content, loaded_at"

// scanDocument reads the documentColumns of a row.
func scanDocument(row rowScanner) (Document, error) {
	var (
		d      Document
		k      string
		loaded int64
	)
	if err := row.Scan(&k, &d.SHA256, &d.ID, &d.Content, &loaded); err != nil {
		return d, err
	}
	d.Kind, d.LoadedAt = DocumentKind(k), fromNanos(loaded)
	return d, nil
}

// activeDocumentsQuery selects every slot's active document: the slot,
// then documentColumns with the activation time as loaded_at.
const activeDocumentsQuery = `SELECT a.slot, d.kind, d.sha256, d.id, d.content, a.activated_at
	FROM active_documents a JOIN documents d ON d.kind = a.kind AND d.sha256 = a.sha256`

type slotDocument struct {
	slot string
	doc  Document
}

// scanSlotDocument reads a row of activeDocumentsQuery.
func scanSlotDocument(row rowScanner) (slotDocument, error) {
	var (
		sd   slotDocument
		kind string
		at   int64
	)
	if err := row.Scan(&sd.slot, &kind, &sd.doc.SHA256, &sd.doc.ID, &sd.doc.Content, &at); err != nil {
		return sd, err
	}
	sd.doc.Kind, sd.doc.LoadedAt = DocumentKind(kind), fromNanos(at)
	return sd, nil
}

// activeDocuments reads the rows of activeDocumentsQuery into a map by slot.
func activeDocuments(rows resultRows) (map[string]Document, error) {
	all, err := scanAll("listing active documents", rows, scanSlotDocument)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Document, len(all))
	for _, sd := range all {
		out[sd.slot] = sd.doc
	}
	return out, nil
}

const auditColumns = "id, at, event, outcome, tee, subject, token_id, policy_id, policy_sha256, remote, reasons, key_name, key_version, prev_hash"

// scanAuditRow reads the auditColumns of a row.
func scanAuditRow(row rowScanner) (AuditRecord, error) {
	var (
		r       AuditRecord
		at      int64
		reasons string
	)
	if err := row.Scan(&r.ID, &at, &r.Event, &r.Outcome, &r.TEE, &r.Subject, &r.TokenID, &r.PolicyID,
		&r.PolicySHA256, &r.Remote, &reasons, &r.KeyName, &r.KeyVersion, &r.PrevHash); err != nil {
		return r, err
	}
	r.Time = fromNanos(at)
	if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
		// A record whose reasons do not decode was tampered with: keep the
		// raw text so the chain check reports it instead of failing.
		r.Reasons = []string{reasons}
	}
	return r, nil
}
