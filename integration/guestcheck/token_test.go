package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func jws(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("signature"))
}

// A claim set shaped like the verifier's (verifier/internal/token.Claims).
const sampleClaims = `{
  "iss": "https://verifier.example",
  "sub": "guest-1",
  "aud": "confidant",
  "exp": 1900000000,
  "eat_nonce": "bm9uY2U",
  "eat_profile": "tag:github.com,2025:confidant-cvm/confidant/eat/v1",
  "hwmodel": "Confidant simulated AMD SEV-SNP",
  "status": "affirming",
  "runtime": {"keys": {"keys": [{"kty": "RSA", "n": "xyz", "e": "AQAB"}]}},
  "policy": {"id": "default", "sha256": "ab12", "reference_sha256": "cd34"}
}`

func TestDecodeClaims(t *testing.T) {
	want := tokenClaims{
		Iss:        "https://verifier.example",
		Sub:        "guest-1",
		HWModel:    "Confidant simulated AMD SEV-SNP",
		Status:     "affirming",
		EATProfile: "tag:github.com,2025:confidant-cvm/confidant/eat/v1",
		Policy:     []byte(`{"id":"default","sha256":"ab12","reference_sha256":"cd34"}`),
	}
	tests := map[string]string{
		"compact":           jws(sampleClaims),
		"trailing newline":  jws(sampleClaims) + "\n",
		"surrounding space": "  " + jws(sampleClaims) + " \n",
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := decodeClaims([]byte(token))
			if err != nil {
				t.Fatalf("decodeClaims: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}

	t.Run("padding tolerated", func(t *testing.T) {
		parts := strings.Split(jws(`{"iss":"a"}`), ".")
		parts[1] = base64.URLEncoding.EncodeToString([]byte(`{"iss":"a"}`))
		got, err := decodeClaims([]byte(strings.Join(parts, ".")))
		if err != nil || got.Iss != "a" {
			t.Errorf("got %+v, %v", got, err)
		}
	})
}

func TestDecodeClaimsErrors(t *testing.T) {
	tests := map[string]struct {
		token   string
		wantErr error
	}{
		"empty":           {"", errMalformedToken},
		"two parts":       {"a.b", errMalformedToken},
		"JWE, five parts": {jws(`{"iss":"a"}`) + ".iv.tag", errMalformedToken},
		"bad base64":      {"a.!!!.c", errMalformedToken},
		"not JSON":        {jws("not json"), errMalformedToken},
		"JSON array":      {jws(`["iss"]`), errMalformedToken},
		"JSON string":     {jws(`"iss"`), errMalformedToken},
		"iss not string":  {jws(`{"iss": 7}`), errMalformedToken},
		"trailing junk":   {jws(`{"iss": "a"} x`), errMalformedToken},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeClaims([]byte(tc.token))
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzDecodeClaims(f *testing.F) {
	f.Add(jws(sampleClaims))
	f.Add("a.b.c")
	f.Add(jws(`{"policy":[1,2,{"a":null}]}`))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := decodeClaims([]byte(token))
		if err != nil {
			if !errors.Is(err, errMalformedToken) {
				t.Fatalf("error %v does not match errMalformedToken", err)
			}
			return
		}
		// What is decoded re-encodes to a token that decodes the same.
		// Without HTML escaping: json.Marshal would turn a policy's "&"
		// into "\u0026", the same JSON in other bytes.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(c); err != nil {
			t.Fatalf("encoding decoded claims: %v", err)
		}
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		again, err := decodeClaims([]byte(jws(string(b))))
		if err != nil {
			t.Fatalf("re-encoded claims %s refused: %v", b, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the claims: %+v != %+v", again, c)
		}
	})
}
