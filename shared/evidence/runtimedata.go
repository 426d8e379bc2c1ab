package evidence

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Size limits of the runtime data.
const (
	// MinNonceSize and MaxNonceSize bound the challenge nonce in bytes.
	MinNonceSize = 32
	MaxNonceSize = 64
	// MaxRuntimeDataSize caps the encoded runtime data.
	MaxRuntimeDataSize = 64 << 10
)

// RuntimeData binds the guest's keys to a verifier challenge. Its canonical
// encoding (Marshal) is what the hardware report and the vTPM quote sign
// over; see the package documentation for the JSON form.
type RuntimeData struct {
	// Nonce is the verifier's challenge nonce (MinNonceSize..MaxNonceSize
	// bytes).
	Nonce []byte
	// AK is the vTPM attestation key's public JWK (a JSON object).
	AK json.RawMessage
	// RuntimeKey is the runtime key's public JWK (a JSON object).
	RuntimeKey json.RawMessage
	// Workload is optional: nil or empty leaves it out; otherwise it must
	// hold a JSON object.
	Workload json.RawMessage
}

// NewRuntimeData builds runtime data from public keys (RSA, ECDSA, Ed25519
// or ECDH public keys as jwk.Import accepts them). Private or symmetric keys
// are refused, so a private key can never end up in evidence.
func NewRuntimeData(nonce []byte, ak, runtimeKey crypto.PublicKey, workload json.RawMessage) (*RuntimeData, error) {
	akJWK, err := publicJWK(ak)
	if err != nil {
		return nil, fmt.Errorf("encoding AK as JWK: %w", err)
	}
	rkJWK, err := publicJWK(runtimeKey)
	if err != nil {
		return nil, fmt.Errorf("encoding runtime key as JWK: %w", err)
	}
	r := &RuntimeData{
		Nonce:      bytes.Clone(nonce),
		AK:         akJWK,
		RuntimeKey: rkJWK,
		Workload:   bytes.Clone(workload),
	}
	if _, err := r.Marshal(); err != nil {
		return nil, err
	}
	return r, nil
}

func publicJWK(pub crypto.PublicKey) (json.RawMessage, error) {
	key, err := jwk.Import(pub)
	if err != nil {
		return nil, err
	}
	priv, err := jwk.IsPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if priv {
		return nil, errors.New("got a private key, want a public key")
	}
	b, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	return canonicalObject(b)
}

// Marshal returns the canonical encoding of r. The embedded JWKs and the
// workload are re-encoded canonically; a JWK that is not a public
// asymmetric key, a workload that is not an object or a nonce of the wrong
// size is an error.
func (r *RuntimeData) Marshal() ([]byte, error) {
	if n := len(r.Nonce); n < MinNonceSize || n > MaxNonceSize {
		return nil, malformed(fmt.Errorf("encoding runtime data: nonce is %d bytes, want %d to %d", n, MinNonceSize, MaxNonceSize))
	}
	ak, err := canonicalJWK(r.AK)
	if err != nil {
		return nil, malformed(fmt.Errorf("encoding runtime data: ak: %w", err))
	}
	rk, err := canonicalJWK(r.RuntimeKey)
	if err != nil {
		return nil, malformed(fmt.Errorf("encoding runtime data: runtime_key: %w", err))
	}
	var wl []byte
	if len(r.Workload) > 0 {
		if wl, err = canonicalObject(r.Workload); err != nil {
			return nil, malformed(fmt.Errorf("encoding runtime data: workload: %w", err))
		}
	}
	// Keys in sorted order: ak, nonce, runtime_key, workload.
	var buf bytes.Buffer
	buf.WriteString(`{"ak":`)
	buf.Write(ak)
	buf.WriteString(`,"nonce":"`)
	buf.WriteString(base64.RawURLEncoding.EncodeToString(r.Nonce))
	buf.WriteString(`","runtime_key":`)
	buf.Write(rk)
	if wl != nil {
		buf.WriteString(`,"workload":`)
		buf.Write(wl)
	}
	buf.WriteByte('}')
	if buf.Len() > MaxRuntimeDataSize {
		return nil, malformed(fmt.Errorf("encoding runtime data: %d bytes: %w", buf.Len(), ErrTooLarge))
	}
	return buf.Bytes(), nil
}

// canonicalJWK checks that raw is a public asymmetric JWK and returns its
// canonical encoding.
func canonicalJWK(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	c, err := canonicalObject(raw)
	if err != nil {
		return nil, err
	}
	if _, err := parsePublicJWK(c); err != nil {
		return nil, err
	}
	return c, nil
}

// parsePublicJWK parses a JWK and accepts only public asymmetric keys. It
// recovers from panics in the JWK library, as the input is untrusted.
func parsePublicJWK(b []byte) (key jwk.Key, err error) {
	defer func() {
		if p := recover(); p != nil {
			key, err = nil, fmt.Errorf("parsing JWK: panic: %v", p)
		}
	}()
	key, err = jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing JWK: %w", err)
	}
	priv, err := jwk.IsPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("parsing JWK: %w", err)
	}
	if priv {
		return nil, errors.New("parsing JWK: private key material present")
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, fmt.Errorf("parsing JWK: %w", err)
	}
	return key, nil
}

// runtimeDataWire mirrors the JSON form; field presence is checked by hand.
type runtimeDataWire struct {
	Nonce      *string         `json:"nonce"`
	AK         json.RawMessage `json:"ak"`
	RuntimeKey json.RawMessage `json:"runtime_key"`
	Workload   json.RawMessage `json:"workload"`
}

// ParseRuntimeData parses canonical runtime data strictly: unknown or
// missing fields, a nonce outside MinNonceSize..MaxNonceSize, JWKs that are
// not public asymmetric keys, a workload that is not an object, and any
// encoding other than the canonical one are errors matching ErrMalformed.
func ParseRuntimeData(b []byte) (*RuntimeData, error) {
	if len(b) > MaxRuntimeDataSize {
		return nil, malformed(fmt.Errorf("parsing runtime data: %d bytes: %w", len(b), ErrTooLarge))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w runtimeDataWire
	if err := dec.Decode(&w); err != nil {
		return nil, malformed(fmt.Errorf("parsing runtime data: %w", err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, malformed(errors.New("parsing runtime data: trailing data"))
	}
	switch {
	case w.Nonce == nil:
		return nil, malformed(errors.New("parsing runtime data: missing nonce"))
	case len(w.AK) == 0:
		return nil, malformed(errors.New("parsing runtime data: missing ak"))
	case len(w.RuntimeKey) == 0:
		return nil, malformed(errors.New("parsing runtime data: missing runtime_key"))
	}
	nonce, err := decodeB64(*w.Nonce)
	if err != nil {
		return nil, malformed(fmt.Errorf("parsing runtime data: nonce: %w", err))
	}
	r := &RuntimeData{Nonce: nonce, AK: w.AK, RuntimeKey: w.RuntimeKey, Workload: w.Workload}
	c, err := r.Marshal()
	if err != nil {
		return nil, fmt.Errorf("parsing runtime data: %w", err)
	}
	if !bytes.Equal(c, b) {
		return nil, malformed(errors.New("parsing runtime data: not in canonical form"))
	}
	// Keep canonical copies, not slices of the caller's buffer.
	r.AK, _ = canonicalObject(r.AK)
	r.RuntimeKey, _ = canonicalObject(r.RuntimeKey)
	if len(r.Workload) > 0 {
		r.Workload, _ = canonicalObject(r.Workload)
	}
	return r, nil
}

// AKPublic returns the attestation key as a crypto public key (for example
// *rsa.PublicKey or *ecdsa.PublicKey).
func (r *RuntimeData) AKPublic() (crypto.PublicKey, error) {
	key, err := parsePublicJWK(r.AK)
	if err != nil {
		return nil, fmt.Errorf("decoding AK: %w", err)
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, fmt.Errorf("decoding AK: %w", err)
	}
	return raw, nil
}

// RuntimeKeyJWK returns the runtime key as a public JWK.
func (r *RuntimeData) RuntimeKeyJWK() (jwk.Key, error) {
	key, err := parsePublicJWK(r.RuntimeKey)
	if err != nil {
		return nil, fmt.Errorf("decoding runtime key: %w", err)
	}
	return key, nil
}

// ReportData returns the value a hardware report's REPORT_DATA must hold
// for the given runtime data bytes: SHA-512(runtimeData).
func ReportData(runtimeData []byte) [64]byte {
	return sha512.Sum512(runtimeData)
}

// TPMNonce returns the value a vTPM quote's extraData must hold for the
// given runtime data bytes: SHA-256(runtimeData).
func TPMNonce(runtimeData []byte) [32]byte {
	return sha256.Sum256(runtimeData)
}
