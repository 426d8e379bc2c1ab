package token

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
)

// Verdicts, the values of the "status" claim (after the AR4SI trust tiers).
const (
	Affirming       = "affirming"
	Warning         = "warning"
	Contraindicated = "contraindicated"
)

// EATProfile is the value of the eat_profile claim: it names this claim set.
const EATProfile = "tag:github.com,2025:confidant-cvm/confidant/eat/v1"

// EAT debug status values (RFC 9711 §4.2.9).
const (
	DbgEnabled             = 0
	DbgDisabled            = 1
	DbgDisabledSinceBoot   = 2
	DbgDisabledPermanently = 3
)

// Claims is the claim set of an attestation token (after RFC 9711, EAT).
// Times are Unix seconds.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	Expiry    int64    `json:"exp"`
	ID        string   `json:"jti"`
	// EATNonce is the redeemed challenge nonce, base64url.
	EATNonce   string `json:"eat_nonce"`
	EATProfile string `json:"eat_profile"`
	// HWModel names the hardware ("AMD SEV-SNP Milan", "Intel TDX", or the
	// simulation).
	HWModel string `json:"hwmodel"`
	// SWName names the software, when the policy names it.
	SWName string `json:"swname,omitempty"`
	// DbgStat is the EAT debug status.
	DbgStat int `json:"dbgstat"`
	// SecBoot is the UEFI secure boot state from the event log.
	SecBoot bool `json:"secboot"`
	// Status is the policy's verdict.
	Status string `json:"status"`
	// TEE holds the verified TEE fields.
	TEE map[string]any `json:"tee"`
	// TPM holds the verified vTPM facts; nil without vTPM evidence.
	TPM *TPM `json:"tpm,omitempty"`
	// Runtime holds the guest's runtime key and workload data.
	Runtime Runtime `json:"runtime"`
	// Policy names the appraisal policy that decided.
	Policy Policy `json:"policy"`
	// Extra holds claims the policy added; they may not replace any of the
	// claims above.
	Extra map[string]any `json:"-"`
}

// Audience is the aud claim: one string, or several in an array.
type Audience []string

// MarshalJSON encodes one audience as a string, several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = Audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("decoding aud: %w", err)
	}
	*a = l
	return nil
}

// TPM is the tpm claim.
type TPM struct {
	// PCRs maps a bank ("sha256") to PCR index (decimal string) to the
	// lower-case hex value.
	PCRs map[string]map[string]string `json:"pcrs"`
	// AKThumbprint is the RFC 7638 thumbprint of the attestation key.
	AKThumbprint string `json:"ak_thumbprint"`
}

// Runtime is the runtime claim.
type Runtime struct {
	// Keys holds the runtime key as a JWK Set: {"keys":[...]}.
	Keys json.RawMessage `json:"keys"`
	// Data is the workload data from the runtime data, if any.
	Data json.RawMessage `json:"data,omitempty"`
}

// Policy is the policy claim.
type Policy struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
	// ReferenceSHA256 is the digest of the reference values used.
	ReferenceSHA256 string `json:"reference_sha256"`
}

// Map returns the claims as one JSON object: the fixed claims merged with
// Extra. An Extra claim that would replace a fixed one is an error.
func (c *Claims) Map() (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	// Keep numbers as written (64-bit TEE fields exceed float64).
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	for name := range c.Extra {
		if reserved(name) {
			return nil, fmt.Errorf("encoding claims: claim %q is reserved", name)
		}
	}
	maps.Copy(m, c.Extra)
	return m, nil
}

// payload encodes the claims as Map does, in one pass: the fixed claims,
// then the Extra claims (sorted), in one JSON object. Map would decode the
// fixed claims and encode them again.
func (c *Claims) payload() ([]byte, error) {
	fixed, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	if len(c.Extra) == 0 {
		return fixed, nil
	}
	for name := range c.Extra {
		if reserved(name) {
			return nil, fmt.Errorf("encoding claims: claim %q is reserved", name)
		}
	}
	extra, err := json.Marshal(c.Extra)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	// Both are non-empty objects: join {"iss":...} and {"x":...} into
	// {"iss":...,"x":...}. No Extra name is a fixed claim's (reserved).
	out := make([]byte, 0, len(fixed)+len(extra))
	out = append(out, fixed[:len(fixed)-1]...)
	out = append(out, ',')
	return append(out, extra[1:]...), nil
}

// reservedClaims are set by the verifier only.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "iat": true, "nbf": true, "exp": true, "jti": true,
	"eat_nonce": true, "eat_profile": true, "hwmodel": true, "swname": true, "dbgstat": true,
	"secboot": true, "status": true, "tee": true, "tpm": true, "runtime": true, "policy": true,
	"cnf": true, "ueid": true, "oemid": true,
}

// reserved reports whether a policy may not set the named claim.
func reserved(name string) bool { return reservedClaims[name] }

// Reserved reports whether name is a claim only the verifier sets (a policy
// naming it is an error).
func Reserved(name string) bool { return reserved(name) }
