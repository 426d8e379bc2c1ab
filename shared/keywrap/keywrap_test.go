package keywrap

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

func mustJWK(t testing.TB, pub crypto.PublicKey) jwk.Key {
	t.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatalf("jwk.Import: %v", err)
	}
	return k
}

func softwareDecrypter(priv *rsa.PrivateKey) OAEPDecrypter {
	return OAEPDecrypterFunc(func(ct []byte) ([]byte, error) {
		return rsa.DecryptOAEP(sha256.New(), nil, priv, ct, nil)
	})
}

func newRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapUnwrapRSA(t *testing.T) {
	priv := newRSA(t, 2048)
	secret := bytes.Repeat([]byte{0x5a}, 32)
	wrapped, err := Wrap(secret, mustJWK(t, &priv.PublicKey))
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	hdr := decodeHeader(t, wrapped)
	if !strings.Contains(hdr, `"alg":"RSA-OAEP-256"`) || !strings.Contains(hdr, `"enc":"A256GCM"`) {
		t.Errorf("protected header = %s, want RSA-OAEP-256 / A256GCM", hdr)
	}
	got, err := Unwrap(wrapped, softwareDecrypter(priv))
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Errorf("Unwrap = %x, want %x", got, secret)
	}
	// An independent implementation (jwx with the private key) agrees.
	plain, err := jwe.Decrypt(wrapped, jwe.WithKey(jwa.RSA_OAEP_256(), priv))
	if err != nil || !bytes.Equal(plain, secret) {
		t.Errorf("jwx Decrypt = %x, %v", plain, err)
	}
}

func TestWrapEC(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := Wrap(secret, mustJWK(t, &priv.PublicKey))
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if hdr := decodeHeader(t, wrapped); !strings.Contains(hdr, `"alg":"ECDH-ES+A256KW"`) || !strings.Contains(hdr, `"enc":"A256GCM"`) {
		t.Errorf("protected header = %s", hdr)
	}
	plain, err := jwe.Decrypt(wrapped, jwe.WithKey(jwa.ECDH_ES_A256KW(), priv))
	if err != nil || !bytes.Equal(plain, secret) {
		t.Errorf("jwx Decrypt = %x, %v", plain, err)
	}
	// Unwrap is for RSA runtime keys only: an EC JWE is refused by alg.
	if _, err := Unwrap(wrapped, softwareDecrypter(newRSA(t, 2048))); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("Unwrap(EC JWE) error = %v, want ErrAlgorithm", err)
	}
}

func TestWrapRefusesKeys(t *testing.T) {
	octKey, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	okp, err := jwk.Import(x.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		key jwk.Key
	}{
		"nil":       {key: nil},
		"symmetric": {key: octKey},
		"x25519":    {key: okp},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Wrap([]byte("secret"), tt.key); !errors.Is(err, ErrAlgorithm) {
				t.Errorf("Wrap error = %v, want ErrAlgorithm", err)
			}
		})
	}
}

func TestUnwrapRefuses(t *testing.T) {
	priv := newRSA(t, 2048)
	secret := bytes.Repeat([]byte{7}, 32)
	good, err := Wrap(secret, mustJWK(t, &priv.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	encryptWith := func(opts ...jwe.EncryptOption) []byte {
		t.Helper()
		out, err := jwe.Encrypt(secret, append(opts, jwe.WithCompact())...)
		if err != nil {
			t.Fatalf("jwe.Encrypt: %v", err)
		}
		return out
	}
	tamper := func(part int) []byte {
		parts := strings.Split(string(good), ".")
		b, err := base64.RawURLEncoding.DecodeString(parts[part])
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		parts[part] = base64.RawURLEncoding.EncodeToString(b)
		return []byte(strings.Join(parts, "."))
	}
	tests := map[string]struct {
		jwe     []byte
		d       OAEPDecrypter
		wantErr error
	}{
		"rsa-oaep-sha1": {
			jwe:     encryptWith(jwe.WithKey(jwa.RSA_OAEP(), &priv.PublicKey), jwe.WithContentEncryption(jwa.A256GCM())),
			wantErr: ErrAlgorithm,
		},
		"rsa1_5": {
			jwe:     encryptWith(jwe.WithKey(jwa.RSA1_5(), &priv.PublicKey), jwe.WithContentEncryption(jwa.A256GCM())),
			wantErr: ErrAlgorithm,
		},
		"a128gcm": {
			jwe:     encryptWith(jwe.WithKey(jwa.RSA_OAEP_256(), &priv.PublicKey), jwe.WithContentEncryption(jwa.A128GCM())),
			wantErr: ErrAlgorithm,
		},
		"cbc-hmac": {
			jwe:     encryptWith(jwe.WithKey(jwa.RSA_OAEP_256(), &priv.PublicKey), jwe.WithContentEncryption(jwa.A256CBC_HS512())),
			wantErr: ErrAlgorithm,
		},
		"dir": {
			jwe:     encryptWith(jwe.WithKey(jwa.DIRECT(), bytes.Repeat([]byte{1}, 32)), jwe.WithContentEncryption(jwa.A256GCM())),
			wantErr: ErrAlgorithm,
		},
		"deflate": {
			jwe:     encryptWith(jwe.WithKey(jwa.RSA_OAEP_256(), &priv.PublicKey), jwe.WithContentEncryption(jwa.A256GCM()), jwe.WithCompress(jwa.Deflate())),
			wantErr: ErrAlgorithm,
		},
		"wrong key":         {jwe: good, d: softwareDecrypter(newRSA(t, 2048)), wantErr: ErrDecrypt},
		"tampered cek":      {jwe: tamper(1), wantErr: ErrDecrypt},
		"tampered iv":       {jwe: tamper(2), wantErr: ErrDecrypt},
		"tampered content":  {jwe: tamper(3), wantErr: ErrDecrypt},
		"tampered tag":      {jwe: tamper(4), wantErr: ErrDecrypt},
		"not compact":       {jwe: []byte(`{"protected":"e30"}`), wantErr: ErrMalformed},
		"garbage":           {jwe: []byte("a.b.c.d.e"), wantErr: ErrMalformed},
		"oversize":          {jwe: bytes.Repeat([]byte("."), maxJWE+1), wantErr: ErrMalformed},
		"decrypter refuses": {jwe: good, d: OAEPDecrypterFunc(func([]byte) ([]byte, error) { return nil, errors.New("tpm: no") }), wantErr: ErrDecrypt},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			d := tt.d
			if d == nil {
				d = softwareDecrypter(priv)
			}
			got, err := Unwrap(tt.jwe, d)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Unwrap error = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Unwrap returned %d bytes alongside an error", len(got))
			}
		})
	}
}

func decodeHeader(t *testing.T, compact []byte) string {
	t.Helper()
	first, _, _ := strings.Cut(string(compact), ".")
	b, err := base64.RawURLEncoding.DecodeString(first)
	if err != nil {
		t.Fatalf("decoding protected header: %v", err)
	}
	return string(b)
}

func FuzzUnwrap(f *testing.F) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	k, err := jwk.Import(&priv.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	good, err := Wrap([]byte("0123456789abcdef0123456789abcdef"), k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("a.b.c.d.e"))
	f.Add(bytes.Replace(good, []byte("."), []byte(".."), 1))
	d := softwareDecrypter(priv)
	f.Fuzz(func(t *testing.T, in []byte) {
		secret, err := Unwrap(in, d)
		if err != nil {
			// Every refusal names its kind, so the agent can say why.
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAlgorithm) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Unwrap error %v wraps no sentinel", err)
			}
			if secret != nil {
				t.Fatalf("Unwrap returned %d bytes with an error", len(secret))
			}
			return
		}
		// Nobody but the wrapper holds the content key: whatever is
		// accepted opens to exactly the secret that was wrapped.
		if !bytes.Equal(secret, []byte("0123456789abcdef0123456789abcdef")) {
			t.Fatalf("Unwrap accepted %q and returned %x", in, secret)
		}
	})
}
