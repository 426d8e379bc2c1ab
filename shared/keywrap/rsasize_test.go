package keywrap

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// TestWrapRefusesShortRSA: an RSA runtime key under 2048 bits gets no key.
// jwx v3 refuses such keys when importing, parsing and exporting them, so
// Wrap's own bit-length check is a second line no input reaches (the
// mutation check reports it as not caught, for that reason).
func TestWrapRefusesShortRSA(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// jwx validates keys it imports or parses; set a short modulus on a
	// key it made, as a caller's own jwk.Key could carry one.
	big2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(&big2048.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.RSANKey, priv.N.Bytes()); err != nil {
		t.Fatal(err)
	}
	// jwx v3 refuses it when exporting too, before Wrap's own check: any
	// refusal will do, no output may come.
	if out, err := Wrap([]byte("0123456789abcdef0123456789abcdef"), k); err == nil || out != nil {
		t.Fatalf("Wrap to a 1024-bit key = %d bytes, %v; want a refusal", len(out), err)
	}
}
