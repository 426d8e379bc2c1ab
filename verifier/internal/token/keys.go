// Package token issues and checks the verifier's attestation tokens: JWTs
// signed with ES256 (or ES384) keys that live in the store, sealed under a
// KEK, and are published as a JWK Set.
//
// Keys rotate on a schedule and on command. A rotated-out key stays in the
// JWK Set until the last token it signed has expired. Every replica sharing
// a store signs with the same current key: rotation is one store
// transaction, and replicas reload the key set periodically.
package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// Supported signing algorithms.
const (
	ES256 = "ES256"
	ES384 = "ES384"
)

// Defaults.
const (
	// DefaultRefresh is how often Run reloads keys from the store.
	DefaultRefresh = time.Minute
	// ClockSkew is added to a retired key's lifetime and allowed when
	// checking token times.
	ClockSkew = time.Minute
)

// ErrNoKey means no current signing key is loaded.
var ErrNoKey = errors.New("no signing key")

// KeyStore holds signing keys. store.Store implements it.
type KeyStore interface {
	SigningKeys(ctx context.Context) ([]store.SigningKey, error)
	RotateSigningKey(ctx context.Context, next store.SigningKey, rotateBefore, keepUntil time.Time) (bool, error)
	PruneSigningKeys(ctx context.Context, before time.Time) (int64, error)
}

// KeysConfig configures Keys.
type KeysConfig struct {
	// Store holds the keys. Required.
	Store KeyStore
	// Sealer seals private keys at rest. Required.
	Sealer *seal.Sealer
	// Alg is ES256 (empty means ES256) or ES384.
	Alg string
	// RotateEvery is the scheduled rotation period; zero means keys rotate
	// only on command.
	RotateEvery time.Duration
	// TokenTTL is the lifetime of issued tokens: a retired key stays
	// published for Refresh+TokenTTL+ClockSkew. Required.
	TokenTTL time.Duration
	// Refresh is how often Run reloads the key set; zero means
	// DefaultRefresh.
	Refresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives rotation events; nil discards them.
	Log *slog.Logger
}

// Keys holds the current signing key and the published key set.
type Keys struct {
	cfg KeysConfig
	alg jwa.SignatureAlgorithm

	mu      sync.RWMutex
	current *signingKey
	public  jwk.Set
	// verifying holds the public key of every key in public, by kid, as
	// Go keys: converting a JWK on every verification costs as much as
	// the rest of the token checks.
	verifying map[string]verifyingKey
}

type signingKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv *ecdsa.PrivateKey
	// header is the token's protected header, base64url-encoded: the
	// same for every token this key signs.
	header string
}

// verifyingKey is a published key: its algorithm and public key.
type verifyingKey struct {
	alg jwa.SignatureAlgorithm
	pub *ecdsa.PublicKey
}

// NewKeys loads the signing keys from the store, creating the first key,
// rotating when the current one is due or uses another algorithm.
func NewKeys(ctx context.Context, cfg KeysConfig) (*Keys, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("no key store"))
	}
	if cfg.Sealer == nil {
		errs = append(errs, errors.New("no sealer"))
	}
	if cfg.Alg == "" {
		cfg.Alg = ES256
	}
	alg, err := parseAlg(cfg.Alg)
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.TokenTTL <= 0 {
		errs = append(errs, fmt.Errorf("token TTL %v must be positive", cfg.TokenTTL))
	}
	if cfg.RotateEvery < 0 {
		errs = append(errs, fmt.Errorf("negative rotation period %v", cfg.RotateEvery))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring signing keys: %w", err)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	k := &Keys{cfg: cfg, alg: alg}
	if _, err := k.rotate(ctx, false); err != nil {
		return nil, err
	}
	if k.current.alg != k.alg {
		k.cfg.Log.Info("signing algorithm changed: rotating", "from", k.current.alg.String(), "to", k.alg.String())
		if _, err := k.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func parseAlg(name string) (jwa.SignatureAlgorithm, error) {
	switch name {
	case ES256:
		return jwa.ES256(), nil
	case ES384:
		return jwa.ES384(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("signing algorithm %q: want ES256 or ES384", name)
}

// Algorithm returns the configured signing algorithm.
func (k *Keys) Algorithm() string { return k.alg.String() }

// Rotate makes a new key current now; the previous one stays published
// until its last token expires.
func (k *Keys) Rotate(ctx context.Context) (bool, error) { return k.rotate(ctx, true) }

// rotate creates a key and offers it to the store, which makes it current
// when forced, when there is no current key, or when the current one is due.
// It then reloads.
func (k *Keys) rotate(ctx context.Context, force bool) (bool, error) {
	now := k.cfg.Now()
	rotateBefore := time.Time{} // only when there is no current key
	switch {
	case force:
		rotateBefore = now.Add(time.Nanosecond)
	case k.cfg.RotateEvery > 0:
		rotateBefore = now.Add(-k.cfg.RotateEvery)
	}
	next, err := k.newKey(now)
	if err != nil {
		return false, err
	}
	// The retired key stays published until the last token it may still
	// sign expires: replicas notice a rotation only at their next refresh.
	keepUntil := now.Add(k.cfg.Refresh + k.cfg.TokenTTL + ClockSkew)
	rotated, err := k.cfg.Store.RotateSigningKey(ctx, next, rotateBefore, keepUntil)
	if err != nil {
		return false, fmt.Errorf("rotating signing key: %w", err)
	}
	if rotated {
		k.cfg.Log.Info("signing key rotated", "kid", next.KID, "alg", next.Alg)
	}
	return rotated, k.Reload(ctx)
}

func (k *Keys) newKey(now time.Time) (store.SigningKey, error) {
	priv, err := ecdsa.GenerateKey(curveOf(k.alg), rand.Reader)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("generating signing key: %w", err)
	}
	pub, kid, err := publicJWK(&priv.PublicKey, k.alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("encoding signing key: %w", err)
	}
	sealed, err := k.cfg.Sealer.Seal(der, []byte(kid))
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("sealing signing key: %w", err)
	}
	return store.SigningKey{KID: kid, Alg: k.alg.String(), PublicJWK: pub, SealedPrivate: sealed, CreatedAt: now}, nil
}

// publicJWK returns the public JWK (with kid, alg and use) and its kid, the
// RFC 7638 SHA-256 thumbprint.
func publicJWK(pub crypto.PublicKey, alg jwa.SignatureAlgorithm) ([]byte, string, error) {
	key, err := jwk.Import(pub)
	if err != nil {
		return nil, "", fmt.Errorf("encoding public key: %w", err)
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", fmt.Errorf("computing key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	for name, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
		if err := key.Set(name, v); err != nil {
			return nil, "", fmt.Errorf("encoding public key: %w", err)
		}
	}
	b, err := json.Marshal(key)
	if err != nil {
		return nil, "", fmt.Errorf("encoding public key: %w", err)
	}
	return b, kid, nil
}

// Reload reads the keys from the store: the current one for signing, and
// every key not yet expired for the published set.
func (k *Keys) Reload(ctx context.Context) error {
	stored, err := k.cfg.Store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	now := k.cfg.Now()
	set := jwk.NewSet()
	verifying := make(map[string]verifyingKey, len(stored))
	var current *signingKey
	for _, sk := range stored {
		if !sk.RetiredAt.IsZero() && !now.Before(sk.ExpiresAt) {
			continue
		}
		pub, err := jwk.ParseKey(sk.PublicJWK)
		if err != nil {
			return fmt.Errorf("loading signing key %s: %w", sk.KID, err)
		}
		if err := set.AddKey(pub); err != nil {
			return fmt.Errorf("loading signing key %s: %w", sk.KID, err)
		}
		vk, err := newVerifyingKey(sk, pub)
		if err != nil {
			return err
		}
		verifying[sk.KID] = vk
		if sk.RetiredAt.IsZero() {
			if current, err = k.open(sk, vk); err != nil {
				return err
			}
		}
	}
	if current == nil {
		return fmt.Errorf("loading signing keys: %w", ErrNoKey)
	}
	k.mu.Lock()
	k.current, k.public, k.verifying = current, set, verifying
	k.mu.Unlock()
	return nil
}

// newVerifyingKey converts a published key for verification. Its JWK must
// carry the kid and algorithm the store names, and its curve must be the
// algorithm's.
func newVerifyingKey(sk store.SigningKey, pub jwk.Key) (verifyingKey, error) {
	alg, err := parseAlg(sk.Alg)
	if err != nil {
		return verifyingKey{}, fmt.Errorf("loading signing key %s: %w", sk.KID, err)
	}
	kid, _ := pub.KeyID()
	jwkAlg := ""
	if a, ok := pub.Algorithm(); ok {
		jwkAlg = a.String()
	}
	if kid != sk.KID || jwkAlg != alg.String() {
		return verifyingKey{}, fmt.Errorf("loading signing key %s: its JWK names kid %q, alg %q", sk.KID, kid, jwkAlg)
	}
	var raw ecdsa.PublicKey
	if err := jwk.Export(pub, &raw); err != nil {
		return verifyingKey{}, fmt.Errorf("loading signing key %s: %w", sk.KID, err)
	}
	if want := curveOf(alg); raw.Curve != want {
		return verifyingKey{}, fmt.Errorf("loading signing key %s: curve %s for %s", sk.KID, raw.Curve.Params().Name, alg)
	}
	return verifyingKey{alg: alg, pub: &raw}, nil
}

// curveOf returns the curve of an ECDSA signature algorithm.
func curveOf(alg jwa.SignatureAlgorithm) elliptic.Curve {
	if alg == jwa.ES384() {
		return elliptic.P384()
	}
	return elliptic.P256()
}

// verifyingKey returns the published key named kid.
func (k *Keys) verifyingKey(kid string) (verifyingKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	vk, ok := k.verifying[kid]
	return vk, ok
}

// open unseals the private key of sk, whose published key (kid, algorithm
// and public key checked) is vk.
func (k *Keys) open(sk store.SigningKey, vk verifyingKey) (*signingKey, error) {
	der, err := k.cfg.Sealer.Open(sk.SealedPrivate, []byte(sk.KID))
	if err != nil {
		return nil, fmt.Errorf("unsealing signing key %s: %w", sk.KID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signing key %s: %w", sk.KID, err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s is %T, want ECDSA", sk.KID, parsed)
	}
	// The private key must match the published public key.
	if !vk.pub.Equal(&priv.PublicKey) {
		return nil, fmt.Errorf("signing key %s does not match its public key", sk.KID)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{vk.alg.String(), sk.KID, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("encoding token header for %s: %w", sk.KID, err)
	}
	return &signingKey{kid: sk.KID, alg: vk.alg, priv: priv, header: base64.RawURLEncoding.EncodeToString(hdr)}, nil
}

// PublicSet returns a copy of the published key set: the current key and
// the retired keys whose tokens may still be valid.
func (k *Keys) PublicSet() (jwk.Set, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.public == nil {
		return nil, ErrNoKey
	}
	return k.public.Clone()
}

// CurrentKID returns the key ID of the current signing key.
func (k *Keys) CurrentKID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.current == nil {
		return ""
	}
	return k.current.kid
}

func (k *Keys) signer() (*signingKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.current == nil {
		return nil, ErrNoKey
	}
	return k.current, nil
}

// Run keeps the keys fresh until ctx ends: every Refresh it rotates a key
// that is due, deletes expired keys from the store and reloads. Errors are
// logged, not fatal: the loaded keys stay in use.
func (k *Keys) Run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := k.cfg.Store.PruneSigningKeys(ctx, k.cfg.Now()); err != nil {
			k.cfg.Log.Warn("pruning signing keys", "err", err)
		}
		if _, err := k.rotate(ctx, false); err != nil && ctx.Err() == nil {
			k.cfg.Log.Warn("refreshing signing keys", "err", err)
		}
	}
}
