//go:build cgo

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// TestRelyingPartyOIDC verifies a token the way an unrelated relying party
// would: go-oidc (an independent JOSE implementation) discovers the issuer
// through /.well-known/openid-configuration, fetches the JWKS and checks
// the signature, iss, aud and expiry.
func TestRelyingPartyOIDC(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := oidc.ClientContext(context.Background(), f.http.Client())
	provider, err := oidc.NewProvider(ctx, f.cfg.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	verifier := provider.VerifierContext(ctx, &oidc.Config{ClientID: "disk-key", Now: f.clock.now})

	tok := f.token(testguest.Options{}, "?audience=disk-key")
	idt, err := verifier.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("go-oidc rejected our token: %v", err)
	}
	var claims struct {
		Status  string         `json:"status"`
		HWModel string         `json:"hwmodel"`
		TEE     map[string]any `json:"tee"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Issuer != f.cfg.Issuer || claims.Status != "affirming" || !strings.Contains(claims.HWModel, "simulated") || claims.TEE["kind"] != "sim-sev-snp" {
		t.Fatalf("claims: iss %s, %+v", idt.Issuer, claims)
	}

	// The previous key still verifies after a rotation.
	if _, err := f.srv.Keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := verifier.Verify(ctx, tok); err != nil {
		t.Fatalf("token of the rotated-out key: %v", err)
	}
	tok2 := f.token(testguest.Options{}, "?audience=disk-key")
	if _, err := verifier.Verify(ctx, tok2); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}

	tests := map[string]struct {
		verifier *oidc.IDTokenVerifier
		token    string
	}{
		"other audience": {verifier: provider.VerifierContext(ctx, &oidc.Config{ClientID: "other", Now: f.clock.now}), token: tok},
		"expired": {verifier: provider.VerifierContext(ctx, &oidc.Config{ClientID: "disk-key",
			Now: func() time.Time { return f.clock.now().Add(f.cfg.TokenTTL + time.Hour) }}), token: tok},
		"tampered": {verifier: verifier, token: tok[:len(tok)-4] + "AAAA"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := tt.verifier.Verify(ctx, tt.token); err == nil {
				t.Fatal("go-oidc accepted the token")
			}
		})
	}
	t.Run("token of another verifier", func(t *testing.T) {
		other := newFixture(t, fixtureOpts{})
		if _, err := verifier.Verify(ctx, other.token(testguest.Options{}, "?audience=disk-key")); err == nil {
			t.Fatal("go-oidc accepted a token of another issuer")
		}
	})
}

func TestDiscoveryAndJWKS(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := f.do(http.MethodGet, "/.well-known/openid-configuration", nil)
	if r.status != http.StatusOK {
		t.Fatalf("discovery: %v", r)
	}
	var d map[string]any
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	if d["issuer"] != f.cfg.Issuer || d["jwks_uri"] != f.cfg.Issuer+"/v1/jwks" {
		t.Fatalf("discovery: %v", d)
	}
	algs, _ := d["id_token_signing_alg_values_supported"].([]any)
	if len(algs) != 2 || algs[0] != "ES256" || algs[1] != "ES384" {
		t.Fatalf("algorithms: %v", algs)
	}
	claims, _ := d["claims_supported"].([]any)
	if len(claims) < 15 {
		t.Fatalf("claims_supported: %v", claims)
	}

	jwks := func() jwk.Set {
		t.Helper()
		r := f.do(http.MethodGet, "/v1/jwks", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwk-set+json" {
			t.Fatalf("jwks: %v", r)
		}
		set, err := jwk.Parse(r.body)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	set := jwks()
	kid := f.srv.Keys.CurrentKID()
	key, ok := set.LookupKeyID(kid)
	if set.Len() != 1 || !ok {
		t.Fatalf("JWKS has %d keys, want the current one %s", set.Len(), kid)
	}
	if alg, _ := key.Algorithm(); alg.String() != token.ES256 {
		t.Fatalf("key alg %v", alg)
	}
	if priv, _ := jwk.IsPrivateKey(key); priv {
		t.Fatal("JWKS publishes a private key")
	}
	if _, err := f.srv.Keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	set = jwks()
	if _, ok := set.LookupKeyID(kid); set.Len() != 2 || !ok {
		t.Fatalf("after rotation the JWKS has %d keys; previous present: %v", set.Len(), ok)
	}
}
