// Package keywrap wraps a released secret for one guest and unwraps it there.
//
// The verifier wraps a key as a compact JWE to the guest's runtime key: an RSA
// runtime key gets RSA-OAEP-256 + A256GCM, an EC runtime key ECDH-ES+A256KW +
// A256GCM. No other algorithm is produced or accepted.
//
// The guest unwraps with a key that never leaves its vTPM: only the content
// encryption key passes through the TPM (TPM2_RSA_Decrypt, OAEP with
// SHA-256); the content is then opened with AES-256-GCM in memory. Anything
// that implements OAEPDecrypter can stand in for the TPM.
package keywrap

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Sentinel errors callers branch on.
var (
	// ErrAlgorithm: the runtime key or the JWE uses an algorithm we refuse.
	ErrAlgorithm = errors.New("keywrap: algorithm not allowed")
	// ErrMalformed: the JWE is not a well-formed compact JWE.
	ErrMalformed = errors.New("keywrap: malformed JWE")
	// ErrDecrypt: the JWE did not decrypt (wrong key or tampered content).
	ErrDecrypt = errors.New("keywrap: decryption failed")
)

// maxJWE bounds the size of a JWE we parse: a wrapped disk key is a few
// hundred bytes.
const maxJWE = 16 << 10

// Wrap encrypts secret to the runtime key as a compact JWE. An RSA key
// (at least 2048 bits) gets RSA-OAEP-256 + A256GCM; an EC key (P-256, P-384
// or P-521) gets ECDH-ES+A256KW + A256GCM. Any other key type is refused with
// ErrAlgorithm.
func Wrap(secret []byte, runtimeKey jwk.Key) ([]byte, error) {
	if runtimeKey == nil {
		return nil, fmt.Errorf("wrapping key: %w: no runtime key", ErrAlgorithm)
	}
	var raw any
	if err := jwk.Export(runtimeKey, &raw); err != nil {
		return nil, fmt.Errorf("wrapping key: exporting runtime key: %w", err)
	}
	var alg jwa.KeyEncryptionAlgorithm
	switch k := raw.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("wrapping key: %w: RSA runtime key of %d bits", ErrAlgorithm, k.N.BitLen())
		}
		alg = jwa.RSA_OAEP_256()
	case *ecdsa.PublicKey:
		alg = jwa.ECDH_ES_A256KW()
	default:
		return nil, fmt.Errorf("wrapping key: %w: runtime key type %T", ErrAlgorithm, raw)
	}
	out, err := jwe.Encrypt(secret,
		jwe.WithKey(alg, raw),
		jwe.WithContentEncryption(jwa.A256GCM()),
		jwe.WithCompact(),
	)
	if err != nil {
		return nil, fmt.Errorf("wrapping key: %w", err)
	}
	return out, nil
}

// OAEPDecrypter decrypts an RSA-OAEP (SHA-256, empty label) ciphertext with
// a private key it holds, e.g. a non-exportable key inside a TPM.
type OAEPDecrypter interface {
	DecryptOAEP(ciphertext []byte) ([]byte, error)
}

// OAEPDecrypterFunc adapts a function to OAEPDecrypter.
type OAEPDecrypterFunc func(ciphertext []byte) ([]byte, error)

// DecryptOAEP calls f.
func (f OAEPDecrypterFunc) DecryptOAEP(ciphertext []byte) ([]byte, error) { return f(ciphertext) }

// Unwrap opens a compact JWE made by Wrap for an RSA runtime key. Only
// alg RSA-OAEP-256 with enc A256GCM, one recipient, no compression and no
// critical extensions are accepted; everything else is refused before any
// decryption is attempted. The content encryption key is decrypted by d.
func Unwrap(compact []byte, d OAEPDecrypter) ([]byte, error) {
	if d == nil {
		return nil, errors.New("unwrapping key: no decrypter")
	}
	if len(compact) > maxJWE {
		return nil, fmt.Errorf("unwrapping key: %w: %d bytes", ErrMalformed, len(compact))
	}
	if strings.Count(string(compact), ".") != 4 {
		return nil, fmt.Errorf("unwrapping key: %w: not compact serialization", ErrMalformed)
	}
	msg, err := jwe.Parse(compact)
	if err != nil {
		return nil, fmt.Errorf("unwrapping key: %w: %v", ErrMalformed, err)
	}
	if err := checkHeaders(msg); err != nil {
		return nil, fmt.Errorf("unwrapping key: %w", err)
	}
	plain, err := jwe.Decrypt(compact, jwe.WithKey(jwa.RSA_OAEP_256(), keyDecrypter{d}))
	if err != nil {
		return nil, fmt.Errorf("unwrapping key: %w: %v", ErrDecrypt, err)
	}
	return plain, nil
}

func checkHeaders(msg *jwe.Message) error {
	if n := len(msg.Recipients()); n != 1 {
		return fmt.Errorf("%w: %d recipients", ErrMalformed, n)
	}
	h := msg.ProtectedHeaders()
	if h == nil {
		return fmt.Errorf("%w: no protected header", ErrMalformed)
	}
	alg, ok := h.Algorithm()
	if !ok || alg != jwa.RSA_OAEP_256() {
		return fmt.Errorf("%w: alg %q", ErrAlgorithm, alg.String())
	}
	enc, ok := h.ContentEncryption()
	if !ok || enc != jwa.A256GCM() {
		return fmt.Errorf("%w: enc %q", ErrAlgorithm, enc.String())
	}
	if zip, ok := h.Compression(); ok && zip != jwa.NoCompress() {
		return fmt.Errorf("%w: compression %q", ErrAlgorithm, zip.String())
	}
	if crit, ok := h.Critical(); ok && len(crit) > 0 {
		return fmt.Errorf("%w: critical headers %v", ErrAlgorithm, crit)
	}
	return nil
}

// keyDecrypter lets jwx hand the encrypted CEK to an OAEPDecrypter.
type keyDecrypter struct{ d OAEPDecrypter }

func (k keyDecrypter) DecryptKey(alg jwa.KeyEncryptionAlgorithm, encryptedKey []byte, _ jwe.Recipient, _ *jwe.Message) ([]byte, error) {
	if alg != jwa.RSA_OAEP_256() {
		return nil, fmt.Errorf("%w: alg %q", ErrAlgorithm, alg.String())
	}
	cek, err := k.d.DecryptOAEP(encryptedKey)
	if err != nil {
		return nil, fmt.Errorf("decrypting content encryption key: %w", err)
	}
	if len(cek) != 32 {
		return nil, fmt.Errorf("%w: content encryption key of %d bytes", ErrDecrypt, len(cek))
	}
	return cek, nil
}
