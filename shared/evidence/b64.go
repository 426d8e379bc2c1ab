package evidence

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// B64 is a byte string encoded in JSON as base64url without padding
// (RFC 4648 §5). Unmarshalling accepts only that alphabet, no padding and no
// whitespace; a JSON null leaves the value nil.
type B64 []byte

// MarshalJSON encodes b as a base64url string without padding.
func (b B64) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.RawURLEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON decodes a base64url string without padding.
func (b *B64) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("decoding base64url string: %w", err)
	}
	v, err := decodeB64(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// decodeB64 decodes unpadded base64url strictly: the encoding of the result
// must give back s, so there is exactly one encoding of each byte string.
func decodeB64(s string) ([]byte, error) {
	v, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decoding base64url: %w", err)
	}
	// DecodeString skips \r and \n; reject them so the encoding is unique.
	if base64.RawURLEncoding.EncodedLen(len(v)) != len(s) {
		return nil, fmt.Errorf("decoding base64url: unexpected characters")
	}
	return v, nil
}
