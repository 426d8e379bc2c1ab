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
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
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
	// header.payload, signed, then .signature: the JWS compact
	// serialization (RFC 7515 §7.1) with the key's fixed header.
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(sk.header)+enc.EncodedLen(len(payload))+enc.EncodedLen(2*66)+2)
	buf = append(buf, sk.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := jwsbb.Sign(sk.priv, sk.alg.String(), buf, nil)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	buf = append(buf, '.')
	return string(enc.AppendEncode(buf, sig)), nil
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

// verify checks the token and returns its payload. The header is read
// only for alg and kid; the key the kid names must be one we publish and
// use that algorithm; jws.VerifyCompactFast checks the header's alg again,
// refuses crit and b64 headers and verifies the signature. The registered
// claims are checked on the payload decoded once.
func (i *Issuer) verify(_ context.Context, token, audience string) ([]byte, error) {
	hdr, _, _, err := jwsbb.SplitCompactString(token)
	if err != nil {
		return nil, fmt.Errorf("parsing token: %w", errors.Join(ErrInvalid, err))
	}
	h := jwsbb.HeaderParseCompact(hdr)
	alg, err := jwsbb.HeaderGetString(h, jws.AlgorithmKey)
	if err != nil || !slices.Contains(AllowedAlgorithms, alg) {
		return nil, fmt.Errorf("checking token: algorithm %q: %w", alg, errors.Join(ErrInvalid, ErrAlgorithm))
	}
	kid, err := jwsbb.HeaderGetString(h, jws.KeyIDKey)
	if err != nil || kid == "" {
		return nil, fmt.Errorf("checking token: no kid: %w", ErrInvalid)
	}
	vk, ok := i.keys.verifyingKey(kid)
	if !ok {
		return nil, fmt.Errorf("checking token: kid %q is not a published key: %w", kid, ErrInvalid)
	}
	if vk.alg.String() != alg {
		return nil, fmt.Errorf("checking token: algorithm %s, key %q is %s: %w", alg, kid, vk.alg, errors.Join(ErrInvalid, ErrAlgorithm))
	}
	payload, err := jws.VerifyCompactFast(vk.pub, []byte(token), vk.alg)
	if err != nil {
		return nil, fmt.Errorf("checking token: %w", errors.Join(ErrInvalid, err))
	}
	if err := i.checkRegistered(payload, audience); err != nil {
		return nil, fmt.Errorf("checking token: %w", errors.Join(ErrInvalid, err))
	}
	return payload, nil
}

// registered holds the registered claims verify checks.
// Times must be JSON integers: a string, a fraction or a value beyond
// int64 fails decoding.
type registered struct {
	Issuer    *string  `json:"iss"`
	Audience  Audience `json:"aud"`
	Expiry    *int64   `json:"exp"`
	NotBefore *int64   `json:"nbf"`
	IssuedAt  *int64   `json:"iat"`
}

// checkRegistered checks iss (ours), aud (holds audience, unless
// audience is empty), and the times with ClockSkew: exp, nbf and iat are
// required integers, now < exp, nbf <= now, iat <= now.
func (i *Issuer) checkRegistered(payload []byte, audience string) error {
	var c registered
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("decoding claims: %w", err)
	}
	var errs []error
	if c.Issuer == nil || *c.Issuer != i.issuer {
		errs = append(errs, errors.New(`"iss" is not this verifier`))
	}
	if audience != "" && !slices.Contains(c.Audience, audience) {
		errs = append(errs, fmt.Errorf(`"aud" does not hold %q`, audience))
	}
	now := i.now().Unix()
	skew := int64(ClockSkew / time.Second)
	for _, t := range []struct {
		name  string
		v     *int64
		valid func(int64) bool
	}{
		{"exp", c.Expiry, func(exp int64) bool { return now < exp+skew }},
		{"nbf", c.NotBefore, func(nbf int64) bool { return nbf <= now+skew }},
		{"iat", c.IssuedAt, func(iat int64) bool { return iat <= now+skew }},
	} {
		if t.v == nil {
			errs = append(errs, fmt.Errorf("%q missing", t.name))
			continue
		}
		if !t.valid(*t.v) {
			errs = append(errs, fmt.Errorf("%q does not hold now", t.name))
		}
	}
	return errors.Join(errs...)
}
