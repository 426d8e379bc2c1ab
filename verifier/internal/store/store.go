// Package store keeps the verifier's state: used nonces, secrets, signing
// keys, the policies and reference values that were loaded, and the audit
// log.
//
// Store is the interface every backend implements: SQLite (embedded, pure
// Go, the default) and PostgreSQL (pgx, for deployments with several
// replicas sharing one database). Both run one implementation of the
// rules (sqlStore, over database/sql); a dialect holds what each database
// spells its own way, and each backend sets up its connections and keeps
// its own migrations. Every write is one transaction: a crash
// or a lost connection leaves either all of it or none. Errors from the
// database itself match ErrUnavailable; outcomes callers branch on have
// their own sentinels (ErrNonceReused, ErrNotFound, ErrConflict).
//
// The audit log is hash-chained: each entry holds the SHA-256 of the
// previous entry's canonical bytes (AuditRecord.Canonical), and a head
// record holds the hash of the last one, so VerifyAudit finds a modified,
// deleted or truncated entry.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// Sentinel errors.
var (
	// ErrUnavailable means the database could not be reached or failed; the
	// caller may retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNonceReused means the nonce was redeemed before.
	ErrNonceReused = errors.New("nonce already redeemed")
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a write collided with an existing record (for
	// example a signing key with the same key ID).
	ErrConflict = errors.New("conflicting record")
	// ErrUnsupported means the store URL names a backend this build does not
	// have.
	ErrUnsupported = errors.New("unsupported store")
)

// Store is the verifier's persistent state. Implementations are safe for
// concurrent use, and several processes may share one database: nonce
// redemption, secret creation and key rotation are atomic across them.
type Store interface {
	// RedeemNonce records a nonce id until expires. It returns ErrNonceReused
	// when the id was recorded before (by any process sharing the store).
	RedeemNonce(ctx context.Context, id []byte, expires time.Time) error
	// RedeemNonceWithAudit redeems the nonce id (as RedeemNonce) and appends
	// r to the audit log (as AppendAudit) in one transaction, and returns
	// the record's id: both are stored or neither. A nonce recorded before
	// is ErrNonceReused, and then nothing is stored.
	RedeemNonceWithAudit(ctx context.Context, id []byte, expires time.Time, r AuditRecord) (int64, error)
	// PruneNonces forgets nonces that expired before the given time and
	// returns how many.
	PruneNonces(ctx context.Context, before time.Time) (int64, error)

	// Secret returns the named secret. On first use it stores the value
	// create returns; concurrent first uses (in any process) all get the
	// same stored value.
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
	// ReplaceSecret replaces the named secret's value old with new, in
	// one transaction, then scrubs old from the database's files where the
	// database can (see sqlStore.ReplaceSecret). A stored value other than old is
	// ErrConflict and an unknown name ErrNotFound; both change nothing.
	// ErrNotScrubbed: new is stored, but old may remain in the files.
	ReplaceSecret(ctx context.Context, name string, old, new []byte) error

	// SigningKeys returns every stored signing key, the current one (zero
	// RetiredAt) first, then the retired ones newest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// RotateSigningKey makes next the current signing key when there is no
	// current key or the current one was created before rotateBefore. The
	// previous current key is retired at next.CreatedAt and kept until
	// keepUntil. It reports whether it rotated; a key ID that exists
	// already is ErrConflict and changes nothing.
	RotateSigningKey(ctx context.Context, next SigningKey, rotateBefore, keepUntil time.Time) (bool, error)
	// PruneSigningKeys deletes retired keys whose ExpiresAt is before the
	// given time and returns how many.
	PruneSigningKeys(ctx context.Context, before time.Time) (int64, error)

	// RecordDocument stores a version of a policy or of the reference
	// values. Recording the same kind and digest again only updates
	// LoadedAt.
	RecordDocument(ctx context.Context, d Document) error
	// Documents returns the recorded versions of one kind, newest first.
	Documents(ctx context.Context, kind DocumentKind) ([]Document, error)

	// AppendAudit appends a record to the audit log and returns its id.
	AppendAudit(ctx context.Context, r AuditRecord) (int64, error)
	// AuditRecords returns up to limit records with ids greater than
	// afterID, oldest first.
	AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error)

	// AuditHead returns the id and hash of the last audit record (zero id
	// and GenesisHash() when the log is empty).
	AuditHead(ctx context.Context) (AuditHead, error)

	// ActivateDocument records d and makes it the active document of slot
	// (for example "policy:sev-snp" or "reference-values"), in one
	// transaction.
	ActivateDocument(ctx context.Context, slot string, d Document) error
	// ActiveDocuments returns the active document of every slot.
	ActiveDocuments(ctx context.Context) (map[string]Document, error)

	// CreateReleaseKey stores a new release key with its first version.
	// A key of that name that exists already is ErrConflict.
	CreateReleaseKey(ctx context.Context, k ReleaseKey, first ReleaseKeyVersion) error
	// RotateReleaseKey adds a version to the named key: seal is called,
	// inside the transaction, with the new version number (never reused,
	// even after deletions) and returns the sealed version. It returns the
	// new version number; an unknown key is ErrNotFound.
	RotateReleaseKey(ctx context.Context, name string, at time.Time, seal func(version int) (ReleaseKeyVersion, error)) (int, error)
	// DeleteReleaseKey deletes one version of the named key, or the whole
	// key when version is 0. Deleting the only remaining version is
	// ErrConflict (delete the key instead); an unknown key or version is
	// ErrNotFound.
	DeleteReleaseKey(ctx context.Context, name string, version int) error
	// SetReleasePolicy replaces the release policy of the named key.
	SetReleasePolicy(ctx context.Context, name string, policy []byte, sha256 string, at time.Time) error
	// ReleaseKey returns the named key and one version of it, with its
	// sealed material: version 0 means the latest. Unknown: ErrNotFound.
	ReleaseKey(ctx context.Context, name string, version int) (ReleaseKey, ReleaseKeyVersion, error)
	// ReleaseKeyInfo returns the named key with the metadata of every
	// version (no sealed material).
	ReleaseKeyInfo(ctx context.Context, name string) (ReleaseKey, error)
	// ReleaseKeys lists every key with the metadata of its versions (no
	// sealed material), by name.
	ReleaseKeys(ctx context.Context) ([]ReleaseKey, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// SigningKey is one token signing key. The private key is stored only
// sealed (encrypted under a key-encryption key kept outside the store).
type SigningKey struct {
	// KID is the key ID: the RFC 7638 thumbprint of the public key.
	KID string
	// Alg is the JWS algorithm, for example "ES256".
	Alg string
	// PublicJWK is the public key as a JWK (JSON).
	PublicJWK []byte
	// SealedPrivate is the private key (PKCS #8) sealed under the KEK.
	SealedPrivate []byte
	// CreatedAt is when the key was made current.
	CreatedAt time.Time
	// RetiredAt is when the key stopped signing; zero for the current key.
	RetiredAt time.Time
	// ExpiresAt is when the last token the key signed expires; after it the
	// key leaves the JWKS. Zero for the current key.
	ExpiresAt time.Time
}

// DocumentKind names what a Document holds.
type DocumentKind string

// Document kinds.
const (
	// DocPolicy is an appraisal policy (Rego source).
	DocPolicy DocumentKind = "policy"
	// DocReferenceValues is a reference values file (JSON).
	DocReferenceValues DocumentKind = "reference-values"
)

// Document is one version of a policy or of the reference values.
type Document struct {
	Kind DocumentKind
	// ID names the document (the policy's package, or the file name).
	ID string
	// SHA256 is the lower-case hex SHA-256 of Content.
	SHA256 string
	// Content is the document's bytes.
	Content []byte
	// LoadedAt is when the verifier last loaded this version.
	LoadedAt time.Time
}

// AuditRecord is one entry of the audit log. It never holds secrets: no
// tokens, no key material.
type AuditRecord struct {
	// ID is assigned by AppendAudit.
	ID int64
	// Time is when the event happened.
	Time time.Time
	// Event names what happened, for example "attest".
	Event string
	// Outcome is the verdict ("affirming", "warning", "contraindicated") or
	// an error code ("nonce_reused", "malformed", ...).
	Outcome string
	// TEE is the evidence kind, if known.
	TEE string
	// Subject is the token subject, if known.
	Subject string
	// TokenID is the jti of an issued token.
	TokenID string
	// PolicyID and PolicySHA256 name the policy that decided, if any.
	PolicyID     string
	PolicySHA256 string
	// KeyName and KeyVersion name the release key of a release attempt or
	// an admin action (version 0: none or the latest).
	KeyName    string
	KeyVersion int
	// Remote is the client address.
	Remote string
	// Reasons lists why the outcome is what it is.
	Reasons []string
	// PrevHash is the SHA-256 of the previous record's canonical bytes
	// (GenesisHash() for the first); set by AppendAudit.
	PrevHash []byte
}

// GenesisHash returns the PrevHash of the first audit record: 32 zero
// bytes, in a new slice on each call so that no caller can change it.
func GenesisHash() []byte { return make([]byte, sha256.Size) }

// AuditHead names the last record of the audit log.
type AuditHead struct {
	// LastID is the id of the last record; 0 when the log is empty.
	LastID int64
	// Hash is the SHA-256 of the last record's canonical bytes
	// (GenesisHash() when empty).
	Hash []byte
}

// Canonical returns the bytes the audit chain hashes: a label and every
// field of the record, including ID and PrevHash, each length-prefixed, so
// that no two different records share an encoding.
func (r *AuditRecord) Canonical() []byte {
	b := []byte("confidant audit v1\x00")
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	for _, s := range []string{r.Event, r.Outcome, r.TEE, r.Subject, r.TokenID, r.KeyName} {
		b = appendField(b, []byte(s))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.KeyVersion)))
	for _, s := range []string{r.PolicyID, r.PolicySHA256, r.Remote} {
		b = appendField(b, []byte(s))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Reasons)))
	for _, s := range r.Reasons {
		b = appendField(b, []byte(s))
	}
	return appendField(b, r.PrevHash)
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// Hash returns the SHA-256 of the record's canonical bytes: the next
// record's PrevHash.
func (r *AuditRecord) Hash() []byte {
	h := sha256.Sum256(r.Canonical())
	return h[:]
}

// maxAuditText bounds each text field and each reason of an audit record
// (escaped; termsafe.Marker ends a cut one).
const maxAuditText = 4096

// normalize makes the record's text storable everywhere (PostgreSQL text
// refuses NUL bytes and invalid UTF-8) and identical once read back, so
// that its hash does not change on the way through the database. Every
// field is escaped (termsafe: printable ASCII kept, anything else
// written as \n, \xNN or \uNNNN) and bounded, so that no text from a
// request can forge a row or drive the terminal of whoever reads the log.
func (r *AuditRecord) normalize() {
	clean := func(s string) string { return termsafe.Clip(s, maxAuditText) }
	for _, p := range []*string{&r.Event, &r.Outcome, &r.TEE, &r.Subject, &r.TokenID, &r.KeyName,
		&r.PolicyID, &r.PolicySHA256, &r.Remote} {
		*p = clean(*p)
	}
	reasons := make([]string, len(r.Reasons))
	for i, s := range r.Reasons {
		reasons[i] = clean(s)
	}
	r.Reasons = reasons
	r.Time = fromNanos(r.Time.UnixNano())
}

// Key origins.
const (
	// OriginPlatform: the verifier generated the key.
	OriginPlatform = "platform"
	// OriginCustomer: an administrator imported the key.
	OriginCustomer = "customer"
)

// ReleaseKey is a named secret the verifier releases to attested guests
// whose token its release policy allows. Its material lives in versions,
// sealed under the KEK.
type ReleaseKey struct {
	Name string
	// Origin is OriginPlatform or OriginCustomer.
	Origin string
	// Policy is the release policy (Rego source); PolicySHA256 its digest.
	Policy       []byte
	PolicySHA256 string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Versions lists the versions oldest first, without material (only
	// from ReleaseKeyInfo and ReleaseKeys).
	Versions []ReleaseKeyVersion
}

// ReleaseKeyVersion is one version of a release key.
type ReleaseKeyVersion struct {
	// Version counts from 1 and is never reused within a key.
	Version int
	// Sealed is the key material sealed under the KEK with the key name and
	// version as associated data; empty in listings.
	Sealed []byte
	// KEKID names the KEK that sealed it (not secret).
	KEKID     string
	CreatedAt time.Time
}

// Open opens the store a URL names: "sqlite:PATH" (the file is created if
// missing) or "postgres://..." / "postgresql://..." (a libpq URL; the
// tables are created if missing).
func Open(ctx context.Context, storeURL string) (Store, error) {
	scheme, rest, ok := strings.Cut(storeURL, ":")
	if !ok {
		return nil, fmt.Errorf("opening store %q: want sqlite:PATH or a postgres:// URL", storeURL)
	}
	switch scheme {
	case "sqlite":
		if rest == "" {
			return nil, fmt.Errorf("opening store %q: empty path", storeURL)
		}
		s, err := OpenSQLite(ctx, rest)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	case "postgres", "postgresql":
		s, err := OpenPostgres(ctx, storeURL)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("opening store: scheme %q: %w", scheme, ErrUnsupported)
}

// Redact returns the store URL without a password (in the user info or
// a password parameter), for logs and errors.
func Redact(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		scheme, _, _ := strings.Cut(raw, "://")
		return scheme + "://(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// unavailable wraps a database error so that it matches ErrUnavailable,
// and ErrFull or ErrReadOnly when the database said so.
func unavailable(action string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", action, err)
	}
	if cond := diskCondition(err); cond != nil {
		return fmt.Errorf("%s: %w", action, errors.Join(ErrUnavailable, cond, err))
	}
	return fmt.Errorf("%s: %w", action, errors.Join(ErrUnavailable, err))
}
