package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// errMalformedToken reports a token that is not a compact JWS with a JSON
// object as payload.
var errMalformedToken = errors.New("malformed token")

// maxTokenBytes bounds the token file read; Confidant's tokens are a few KiB.
const maxTokenBytes = 64 << 10

// tokenClaims are the claims this program shows. Everything else in the
// token (nonce, runtime keys, the signature) is left out.
type tokenClaims struct {
	Iss        string          `json:"iss"`
	Sub        string          `json:"sub"`
	HWModel    string          `json:"hwmodel"`
	Status     string          `json:"status"`
	EATProfile string          `json:"eat_profile"`
	SecBoot    *bool           `json:"secboot,omitempty"`
	Policy     json.RawMessage `json:"policy,omitempty"`
	// TPM keeps the quoted PCRs the verifier put in the token, which the
	// host compares with the values confidant-image predicted.
	TPM *struct {
		PCRs map[string]map[string]string `json:"pcrs"`
	} `json:"tpm,omitempty"`
}

// decodeClaims decodes the payload of a compact JWS without verifying it:
// this program only shows what the guest was given. Only the claims of
// tokenClaims are kept.
func decodeClaims(token []byte) (tokenClaims, error) {
	s := strings.TrimSpace(string(token))
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return tokenClaims{}, fmt.Errorf("%w: %d dot-separated parts, want 3", errMalformedToken, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return tokenClaims{}, fmt.Errorf("%w: payload: %v", errMalformedToken, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(payload), []byte("{")) {
		return tokenClaims{}, fmt.Errorf("%w: payload is not a JSON object", errMalformedToken)
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return tokenClaims{}, fmt.Errorf("%w: payload: %v", errMalformedToken, err)
	}
	if len(c.Policy) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, c.Policy); err != nil {
			return tokenClaims{}, fmt.Errorf("%w: policy claim: %v", errMalformedToken, err)
		}
		c.Policy = buf.Bytes()
	}
	return c, nil
}
