package token

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// fastRP is the relying-party recipe verifier/README.md shows for checking
// many tokens with jwx: keys exported from the cached JWK Set once, the
// signature checked with jws.VerifyCompactFast, the claims decoded once
// into the fields the relying party uses.
type fastRP struct {
	keys     map[string]fastRPKey
	issuer   string
	audience string
}

type fastRPKey struct {
	alg jwa.SignatureAlgorithm
	pub *ecdsa.PublicKey
}

// fastRPClaims are the claims this relying party reads.
type fastRPClaims struct {
	Issuer    string   `json:"iss"`
	Audience  Audience `json:"aud"`
	Expiry    *int64   `json:"exp"`
	NotBefore *int64   `json:"nbf"`
	Status    string   `json:"status"`
	HWModel   string   `json:"hwmodel"`
	SWName    string   `json:"swname"`
}

func newFastRP(set jwk.Set, issuer, audience string) (*fastRP, error) {
	rp := &fastRP{keys: map[string]fastRPKey{}, issuer: issuer, audience: audience}
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		a, ok := k.Algorithm()
		if kid == "" || !ok {
			return nil, fmt.Errorf("key %d has no kid or alg", i)
		}
		alg, ok := jwa.LookupSignatureAlgorithm(a.String())
		if !ok || (alg != jwa.ES256() && alg != jwa.ES384()) {
			return nil, fmt.Errorf("key %s: algorithm %s not accepted", kid, a)
		}
		var pub ecdsa.PublicKey
		if err := jwk.Export(k, &pub); err != nil {
			return nil, err
		}
		rp.keys[kid] = fastRPKey{alg: alg, pub: &pub}
	}
	return rp, nil
}

func (rp *fastRP) verify(token []byte, now time.Time) (*fastRPClaims, error) {
	hdr, _, _, err := jwsbb.SplitCompact(token)
	if err != nil {
		return nil, err
	}
	h := jwsbb.HeaderParseCompact(hdr)
	kid, err := jwsbb.HeaderGetString(h, jws.KeyIDKey)
	if err != nil {
		return nil, fmt.Errorf("kid: %w", err)
	}
	key, ok := rp.keys[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	// The key's algorithm, not the token's: VerifyCompactFast refuses a
	// header naming another.
	payload, err := jws.VerifyCompactFast(key.pub, token, key.alg)
	if err != nil {
		return nil, err
	}
	var c fastRPClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	t := now.Unix()
	skew := int64(time.Minute / time.Second)
	switch {
	case c.Issuer != rp.issuer:
		return nil, errors.New("wrong issuer")
	case !slices.Contains(c.Audience, rp.audience):
		return nil, errors.New("wrong audience")
	case c.Expiry == nil || t >= *c.Expiry+skew:
		return nil, errors.New("expired or no exp")
	case c.NotBefore == nil || *c.NotBefore > t+skew:
		return nil, errors.New("not yet valid or no nbf")
	}
	return &c, nil
}

// TestFastRPRecipe checks the recipe refuses what jwt.Parse refuses: a
// benchmark of a recipe that accepted anything would measure nothing.
func TestFastRPRecipe(t *testing.T) {
	f := newFixture(t, ES256)
	good, err := f.iss.Sign(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := f.keys.PublicSet()
	raw, _ := json.Marshal(pub)
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := newFastRP(set, f.iss.Issuer(), "disk")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := rp.verify([]byte(good), f.clock.now()); err != nil || c.Status != Affirming {
		t.Fatalf("good token: %v, %+v", err, c)
	}
	tampered := []byte(good)
	tampered[len(good)/2] ^= 1
	other, _ := newFastRP(set, f.iss.Issuer(), "other")
	for name, check := range map[string]func() error{
		"tampered":       func() error { _, err := rp.verify(tampered, f.clock.now()); return err },
		"expired":        func() error { _, err := rp.verify([]byte(good), f.clock.now().Add(DefaultTTL+ClockSkew)); return err },
		"not yet valid":  func() error { _, err := rp.verify([]byte(good), f.clock.now().Add(-ClockSkew-time.Second)); return err },
		"other audience": func() error { _, err := other.verify([]byte(good), f.clock.now()); return err },
	} {
		if check() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
