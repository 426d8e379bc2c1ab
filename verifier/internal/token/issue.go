package token

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// DefaultTTL is the default token lifetime.
const DefaultTTL = 5 * time.Minute

// Sentinel errors from Verify.
var (
	// ErrInvalid means the token is not one of ours or not valid now.
	ErrInvalid = errors.New("invalid token")
	// ErrAlgorithm means the token's algorithm is not allowed.
	ErrAlgorithm = errors.New("token algorithm not allowed")
)

// AllowedAlgorithms is the pinned allow-list of token algorithms.
var AllowedAlgorithms = []string{ES256, ES384}

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// Keys signs. Required.
	Keys *Keys
	// Issuer is the iss claim (a URL). Required.
	Issuer string
	// TTL is the token lifetime; zero means DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand makes token IDs; nil means crypto/rand.
	Rand io.Reader
}

// Issuer signs attestation tokens and checks them.
type Issuer struct {
	keys   *Keys
	issuer string
	ttl    time.Duration
	now    func() time.Time
	rand   io.Reader
}

// NewIssuer returns an Issuer.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	var errs []error
	if cfg.Keys == nil {
		errs = append(errs, errors.New("no signing keys"))
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("no issuer"))
	}
	if cfg.TTL < 0 {
		errs = append(errs, fmt.Errorf("negative token TTL %v", cfg.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring token issuer: %w", err)
	}
	i := &Issuer{keys: cfg.Keys, issuer: cfg.Issuer, ttl: cfg.TTL, now: cfg.Now, rand: cfg.Rand}
	if i.ttl == 0 {
		i.ttl = DefaultTTL
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.rand == nil {
		i.rand = rand.Reader
	}
	return i, nil
}

// Issuer returns the iss claim value.
func (i *Issuer) Issuer() string { return i.issuer }

// TTL returns the token lifetime.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Stamp fills the issuer, times and token ID of c.
func (i *Issuer) Stamp(c *Claims) error {
	return Stamp(c, i.issuer, i.now(), i.ttl, i.rand)
}

// Stamp fills the token-only claims of c: iss, iat and nbf (now, in whole
// seconds), exp (now+ttl), a random jti (16 bytes from rand) and
// eat_profile.
func Stamp(c *Claims, issuer string, now time.Time, ttl time.Duration, rand io.Reader) error {
	id := make([]byte, 16)
	if _, err := io.ReadFull(rand, id); err != nil {
		return fmt.Errorf("making token ID: %w", err)
	}
	now = now.Truncate(time.Second)
	c.Issuer = issuer
	c.IssuedAt = now.Unix()
	c.NotBefore = now.Unix()
	c.Expiry = now.Add(ttl).Unix()
	c.ID = base64.RawURLEncoding.EncodeToString(id)
	c.EATProfile = EATProfile
	return nil
}

// Sign stamps c (Stamp) and signs it with the current key, returning the
// compact JWT.
func (i *Issuer) Sign(c *Claims) (string, error) {
	if err := i.Stamp(c); err != nil {
		return "", err
	}
	payload, err := c.payload()
	if err != nil {
		return "", err
	}
	return i.keys.sign(payload)
}

func (k *Keys) sign(payload []byte) (string, error) {
	sk, err := k.signer()
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.KeyIDKey: sk.kid, jws.TypeKey: "JWT"} {
		if err := hdr.Set(name, v); err != nil {
			return "", fmt.Errorf("signing token: %w", err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(sk.alg, sk.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return string(out), nil
}

// Verify checks a token the way a relying party must: the algorithm is on
// the allow-list (never "none"), the kid names a key of our published set,
// the signature verifies, iss is ours, aud holds audience (when not empty),
// and exp/nbf/iat hold now (with ClockSkew). It returns the claims.
func (i *Issuer) Verify(ctx context.Context, token, audience string) (map[string]any, error) {
	payload, err := i.verify(ctx, token, audience)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("decoding token claims: %w", errors.Join(ErrInvalid, err))
	}
	return claims, nil
}

// VerifyClaims is Verify with numbers kept as json.Number (64-bit TEE
// fields exceed float64), for policies that evaluate the claims.
func (i *Issuer) VerifyClaims(ctx context.Context, token, audience string) (map[string]any, error) {
	payload, err := i.verify(ctx, token, audience)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("decoding token claims: %w", errors.Join(ErrInvalid, err))
	}
	return claims, nil
}

// verify checks the token and returns its payload.
func (i *Issuer) verify(ctx context.Context, token, audience string) ([]byte, error) {
	msg, err := jws.ParseString(token, jws.WithCompact())
	if err != nil {
		return nil, fmt.Errorf("parsing token: %w", errors.Join(ErrInvalid, err))
	}
	if len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("parsing token: %d signatures: %w", len(msg.Signatures()), ErrInvalid)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok || !slices.Contains(AllowedAlgorithms, alg.String()) {
		return nil, fmt.Errorf("checking token: algorithm %q: %w", alg.String(), errors.Join(ErrInvalid, ErrAlgorithm))
	}
	if kid, ok := hdr.KeyID(); !ok || kid == "" {
		return nil, fmt.Errorf("checking token: no kid: %w", ErrInvalid)
	}
	set, err := i.keys.PublicSet()
	if err != nil {
		return nil, fmt.Errorf("checking token: %w", err)
	}
	opts := []jwt.ParseOption{
		jwt.WithContext(ctx),
		jwt.WithKeySet(set, jws.WithRequireKid(true)),
		jwt.WithValidate(true),
		jwt.WithIssuer(i.issuer),
		jwt.WithRequiredClaim("exp"),
		jwt.WithRequiredClaim("iat"),
		jwt.WithRequiredClaim("nbf"),
		jwt.WithClock(jwt.ClockFunc(i.now)),
		jwt.WithAcceptableSkew(ClockSkew),
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	if _, err := jwt.ParseString(token, opts...); err != nil {
		return nil, fmt.Errorf("checking token: %w", errors.Join(ErrInvalid, err))
	}
	return msg.Payload(), nil
}
