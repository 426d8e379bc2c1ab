package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type fixture struct {
	st     *store.SQLite
	sealer *seal.Sealer
	clock  *clock
	keys   *Keys
	iss    *Issuer
}

func newFixture(t testing.TB, alg string) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, sealer: sealer, clock: &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}}
	f.keys = f.newKeys(t, alg)
	f.iss, err = NewIssuer(IssuerConfig{Keys: f.keys, Issuer: "https://verifier.example", Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) newKeys(t testing.TB, alg string) *Keys {
	t.Helper()
	k, err := NewKeys(context.Background(), KeysConfig{Store: f.st, Sealer: f.sealer, Alg: alg,
		TokenTTL: DefaultTTL, RotateEvery: 24 * time.Hour, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleClaims() *Claims {
	return &Claims{Subject: "sim-sev-snp:abcd", Audience: Audience{"disk"}, EATNonce: "bm9uY2U",
		HWModel: "test", Status: Affirming, TEE: map[string]any{"kind": "sim-sev-snp"},
		Runtime: Runtime{Keys: json.RawMessage(`{"keys":[]}`)}, Policy: Policy{ID: "p", SHA256: "00"}}
}

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []string{ES256, ES384} {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg)
			tok, err := f.iss.Sign(sampleClaims())
			if err != nil {
				t.Fatal(err)
			}
			claims, err := f.iss.Verify(ctx, tok, "disk")
			if err != nil {
				t.Fatal(err)
			}
			if claims["sub"] != "sim-sev-snp:abcd" || claims["aud"] != "disk" || claims["eat_profile"] != EATProfile {
				t.Fatalf("claims: %v", claims)
			}
			msg, _ := jws.ParseString(tok)
			hdr := msg.Signatures()[0].ProtectedHeaders()
			if a, _ := hdr.Algorithm(); a.String() != alg {
				t.Fatalf("alg %v, want %s", a, alg)
			}
			if kid, _ := hdr.KeyID(); kid != f.keys.CurrentKID() || len(kid) != 43 {
				t.Fatalf("kid %q, want the RFC 7638 thumbprint %q", kid, f.keys.CurrentKID())
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ES256)
	good, err := f.iss.Sign(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])

	// A token whose header says alg "none" and has no signature.
	noneTok := b64([]byte(`{"alg":"none","kid":"`+f.keys.CurrentKID()+`","typ":"JWT"}`)) + "." + parts[1] + "."
	// HS256 with the public key as HMAC secret (algorithm confusion).
	set, _ := f.keys.PublicSet()
	pub, _ := set.Key(0)
	pubJSON, _ := json.Marshal(pub)
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, f.keys.CurrentKID())
	hs, err := jws.Sign(payload, jws.WithKey(jwa.HS256(), pubJSON, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	// A token signed by a stranger's key under our kid.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerTok, _ := jws.Sign(payload, jws.WithKey(jwa.ES256(), stranger, jws.WithProtectedHeaders(hdr)))
	// Our key, but no kid.
	noKid, _ := jws.Sign(payload, jws.WithKey(jwa.ES256(), f.keys.current.priv))
	// Our key, unknown kid.
	hdr2 := jws.NewHeaders()
	_ = hdr2.Set(jws.KeyIDKey, "unknown")
	otherKid, _ := jws.Sign(payload, jws.WithKey(jwa.ES256(), f.keys.current.priv, jws.WithProtectedHeaders(hdr2)))
	// Tampered payload.
	tampered := parts[0] + "." + b64([]byte(strings.Replace(string(payload), "abcd", "abce", 1))) + "." + parts[2]

	sign := func(mutate func(*Claims)) string {
		c := sampleClaims()
		iss := *f.iss
		mutate(c)
		if c.Issuer != "" {
			iss.issuer = c.Issuer
		}
		tok, err := iss.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherIssuer := sign(func(c *Claims) { c.Issuer = "https://evil.example" })

	tests := map[string]struct {
		token    string
		aud      string
		advance  time.Duration
		wantErr  error
		wantAlgo bool
	}{
		"good":               {token: good, aud: "disk"},
		"good, no aud check": {token: good},
		"alg none":           {token: noneTok, aud: "disk", wantErr: ErrAlgorithm},
		"HS256 confusion":    {token: string(hs), aud: "disk", wantErr: ErrAlgorithm},
		"stranger's key":     {token: string(strangerTok), aud: "disk", wantErr: ErrInvalid},
		"no kid":             {token: string(noKid), aud: "disk", wantErr: ErrInvalid},
		"unknown kid":        {token: string(otherKid), aud: "disk", wantErr: ErrInvalid},
		"tampered":           {token: tampered, aud: "disk", wantErr: ErrInvalid},
		"wrong audience":     {token: good, aud: "other", wantErr: ErrInvalid},
		"wrong issuer":       {token: otherIssuer, aud: "disk", wantErr: ErrInvalid},
		"expired":            {token: good, aud: "disk", advance: DefaultTTL + ClockSkew + time.Second, wantErr: ErrInvalid},
		"not yet valid":      {token: good, aud: "disk", advance: -ClockSkew - time.Second, wantErr: ErrInvalid},
		"garbage":            {token: "a.b.c", aud: "disk", wantErr: ErrInvalid},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			iss := *f.iss
			iss.now = func() time.Time { return f.clock.t.Add(tt.advance) }
			_, err := iss.Verify(ctx, tt.token, tt.aud)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not match ErrInvalid", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ES256)
	oldKID := f.keys.CurrentKID()
	oldTok, err := f.iss.Sign(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	// A second replica sharing the store signs with the same key.
	replica := f.newKeys(t, ES256)
	if replica.CurrentKID() != oldKID {
		t.Fatalf("replica key %s, want %s", replica.CurrentKID(), oldKID)
	}

	f.clock.t = f.clock.t.Add(time.Minute)
	if rotated, err := f.keys.Rotate(ctx); err != nil || !rotated {
		t.Fatalf("Rotate = %v, %v", rotated, err)
	}
	if f.keys.CurrentKID() == oldKID {
		t.Fatal("key did not change")
	}
	set, _ := f.keys.PublicSet()
	if set.Len() != 2 {
		t.Fatalf("JWKS has %d keys after rotation, want 2", set.Len())
	}
	if _, ok := set.LookupKeyID(oldKID); !ok {
		t.Fatal("previous key left the JWKS before its tokens expired")
	}
	if _, err := f.iss.Verify(ctx, oldTok, "disk"); err != nil {
		t.Fatalf("token of the previous key: %v", err)
	}
	if err := replica.Reload(ctx); err != nil || replica.CurrentKID() != f.keys.CurrentKID() {
		t.Fatalf("replica after reload: %s, %v", replica.CurrentKID(), err)
	}

	// Once its last token has expired the old key leaves the set.
	f.clock.t = f.clock.t.Add(DefaultRefresh + DefaultTTL + ClockSkew)
	if err := f.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	set, _ = f.keys.PublicSet()
	if _, ok := set.LookupKeyID(oldKID); ok || set.Len() != 1 {
		t.Fatalf("expired key still published (%d keys)", set.Len())
	}
}

func TestScheduledRotation(t *testing.T) {
	f := newFixture(t, ES256)
	kid := f.keys.CurrentKID()
	f.clock.t = f.clock.t.Add(23 * time.Hour)
	if rotated, err := f.keys.rotate(context.Background(), false); err != nil || rotated {
		t.Fatalf("rotated early: %v, %v", rotated, err)
	}
	f.clock.t = f.clock.t.Add(2 * time.Hour)
	if rotated, err := f.keys.rotate(context.Background(), false); err != nil || !rotated || f.keys.CurrentKID() == kid {
		t.Fatalf("did not rotate when due: %v, %v", rotated, err)
	}
}

func TestAlgorithmChangeRotates(t *testing.T) {
	f := newFixture(t, ES256)
	k := f.newKeys(t, ES384)
	if k.current.alg != jwa.ES384() {
		t.Fatalf("current key alg %v after switching to ES384", k.current.alg)
	}
	set, _ := k.PublicSet()
	if set.Len() != 2 {
		t.Fatalf("%d published keys, want the old ES256 one too", set.Len())
	}
}

func TestWrongKEK(t *testing.T) {
	f := newFixture(t, ES256)
	other, _ := seal.New(append(make([]byte, 31), 1))
	_, err := NewKeys(context.Background(), KeysConfig{Store: f.st, Sealer: other, TokenTTL: DefaultTTL, Now: f.clock.now})
	if !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("got %v, want seal.ErrOpen", err)
	}
}

func TestReservedExtraClaims(t *testing.T) {
	f := newFixture(t, ES256)
	c := sampleClaims()
	c.Extra = map[string]any{"sub": "someone else"}
	if _, err := f.iss.Sign(c); err == nil {
		t.Fatal("policy claim replaced sub")
	}
	c.Extra = map[string]any{"workload_class": "db"}
	tok, err := f.iss.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := f.iss.Verify(context.Background(), tok, "")
	if err != nil || claims["workload_class"] != "db" {
		t.Fatalf("extra claim: %v, %v", claims, err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewKeys(context.Background(), KeysConfig{Alg: "RS256"}); err == nil {
		t.Fatal("bad config accepted")
	}
	if _, err := NewIssuer(IssuerConfig{}); err == nil {
		t.Fatal("bad issuer config accepted")
	}
}

// FuzzVerify feeds hostile tokens to Verify, which the key release
// endpoint runs on bearer tokens.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, ES256)
	good, err := fx.iss.Sign(sampleClaims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("a.b.c")
	f.Add("")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, tok string) {
		claims, err := fx.iss.Verify(context.Background(), tok, "")
		// The same header and payload may carry another encoding of a
		// valid signature (ECDSA malleability); anything else is forged.
		signed := good[:strings.LastIndex(good, ".")]
		if err == nil && !strings.HasPrefix(tok, signed+".") {
			t.Fatalf("accepted a token we did not sign: %q (%v)", tok, claims)
		}
	})
}

// TestVerifyRegisteredClaims signs payloads and headers the issuer never
// makes with the current key: each must still be refused for its claim or
// header, not only for its signature.
func TestVerifyRegisteredClaims(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, ES256)
	now := f.clock.t.Unix()
	kid := f.keys.CurrentKID()
	sign := func(t *testing.T, hdrs map[string]any, alg jwa.SignatureAlgorithm, payload string) string {
		t.Helper()
		hdr := jws.NewHeaders()
		for k, v := range hdrs {
			if err := hdr.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		var key any = f.keys.current.priv
		if alg == jwa.ES384() {
			key, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		}
		tok, err := jws.Sign([]byte(payload), jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}
	claims := func(mutate func(map[string]any)) string {
		m := map[string]any{"iss": f.iss.Issuer(), "aud": "disk", "iat": now, "nbf": now, "exp": now + 300}
		mutate(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	std := map[string]any{jws.KeyIDKey: kid}
	tests := map[string]struct {
		hdrs    map[string]any
		alg     jwa.SignatureAlgorithm
		payload string
		aud     string
		wantErr error
	}{
		"baseline":             {payload: claims(func(map[string]any) {}), aud: "disk"},
		"aud in an array":      {payload: claims(func(m map[string]any) { m["aud"] = []string{"x", "disk"} }), aud: "disk"},
		"aud array without":    {payload: claims(func(m map[string]any) { m["aud"] = []string{"x", "y"} }), aud: "disk", wantErr: ErrInvalid},
		"no aud":               {payload: claims(func(m map[string]any) { delete(m, "aud") }), aud: "disk", wantErr: ErrInvalid},
		"no iss":               {payload: claims(func(m map[string]any) { delete(m, "iss") }), aud: "disk", wantErr: ErrInvalid},
		"no exp":               {payload: claims(func(m map[string]any) { delete(m, "exp") }), aud: "disk", wantErr: ErrInvalid},
		"no nbf":               {payload: claims(func(m map[string]any) { delete(m, "nbf") }), aud: "disk", wantErr: ErrInvalid},
		"no iat":               {payload: claims(func(m map[string]any) { delete(m, "iat") }), aud: "disk", wantErr: ErrInvalid},
		"exp as a string":      {payload: claims(func(m map[string]any) { m["exp"] = fmt.Sprint(now + 300) }), aud: "disk", wantErr: ErrInvalid},
		"exp a fraction":       {payload: claims(func(m map[string]any) { m["exp"] = float64(now) + 300.5 }), aud: "disk", wantErr: ErrInvalid},
		"exp just past skew":   {payload: claims(func(m map[string]any) { m["exp"] = now - 60 }), aud: "disk", wantErr: ErrInvalid},
		"exp within skew":      {payload: claims(func(m map[string]any) { m["exp"] = now - 59 }), aud: "disk"},
		"nbf beyond skew":      {payload: claims(func(m map[string]any) { m["nbf"] = now + 61 }), aud: "disk", wantErr: ErrInvalid},
		"iat in the future":    {payload: claims(func(m map[string]any) { m["iat"] = now + 61 }), aud: "disk", wantErr: ErrInvalid},
		"payload not JSON":     {payload: "not json", aud: "disk", wantErr: ErrInvalid},
		"payload JSON array":   {payload: "[1]", aud: "disk", wantErr: ErrInvalid},
		"crit header":          {hdrs: map[string]any{jws.KeyIDKey: kid, jws.CriticalKey: []string{"exp"}, "exp": 1}, payload: claims(func(map[string]any) {}), aud: "disk", wantErr: ErrInvalid},
		"ES384 under our kid":  {hdrs: std, alg: jwa.ES384(), payload: claims(func(map[string]any) {}), aud: "disk", wantErr: ErrAlgorithm},
		"unknown extra header": {hdrs: map[string]any{jws.KeyIDKey: kid, "x": 1}, payload: claims(func(map[string]any) {}), aud: "disk"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			hdrs, alg := tt.hdrs, tt.alg
			if hdrs == nil {
				hdrs = std
			}
			if alg == (jwa.SignatureAlgorithm{}) {
				alg = jwa.ES256()
			}
			_, err := f.iss.Verify(ctx, sign(t, hdrs, alg, tt.payload), tt.aud)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not match ErrInvalid", err)
			}
		})
	}
}
