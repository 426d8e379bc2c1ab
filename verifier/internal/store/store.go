// Package store keeps the verifier's state: used nonces, secrets, signing
// keys, the policies and reference values that were loaded, and the audit
// log.
//
// Store is the interface every backend implements; SQLite (embedded, pure
// Go, the default) is the one implementation so far, and PostgreSQL will be
// added behind the same interface for deployments with several replicas.
// Every write is one transaction: a crash leaves either all of it or none.
// Errors from the database itself match ErrUnavailable; outcomes callers
// branch on have their own sentinels (ErrNonceReused, ErrNotFound).
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
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
	// PruneNonces forgets nonces that expired before the given time and
	// returns how many.
	PruneNonces(ctx context.Context, before time.Time) (int64, error)

	// Secret returns the named secret. On first use it stores the value
	// create returns; concurrent first uses (in any process) all get the
	// same stored value.
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)

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
	// Remote is the client address.
	Remote string
	// Reasons lists why the outcome is what it is.
	Reasons []string
}

// Open opens the store a URL names. Supported: "sqlite:PATH" (the file is
// created if missing). A PostgreSQL URL is ErrUnsupported until that
// backend exists.
func Open(ctx context.Context, url string) (Store, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok {
		return nil, fmt.Errorf("opening store %q: want sqlite:PATH", url)
	}
	switch scheme {
	case "sqlite":
		if rest == "" {
			return nil, fmt.Errorf("opening store %q: empty path", url)
		}
		return OpenSQLite(ctx, rest)
	case "postgres", "postgresql":
		return nil, fmt.Errorf("opening store: %s: %w", scheme, ErrUnsupported)
	}
	return nil, fmt.Errorf("opening store: scheme %q: %w", scheme, ErrUnsupported)
}

// unavailable wraps a database error so that it matches ErrUnavailable.
func unavailable(action string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", action, err)
	}
	return fmt.Errorf("%s: %w", action, errors.Join(ErrUnavailable, err))
}
