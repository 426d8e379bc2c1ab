package token

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeObject decodes one JSON object with json.Number numbers and fails
// on a duplicate member name.
func decodeObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		name := tok.(string)
		if seen[name] {
			t.Fatalf("duplicate claim %q in %s", name, b)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	dec = json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPayloadIsMap: the payload Sign encodes is the claim set Map returns.
func TestPayloadIsMap(t *testing.T) {
	withData := sampleClaims()
	withData.Runtime.Data = json.RawMessage(`{"service":"db","replicas":3}`)
	withData.TPM = &TPM{PCRs: map[string]map[string]string{"sha256": {"0": "00", "7": "ff"}}, AKThumbprint: "tp"}
	withData.TEE = map[string]any{"kind": "sev-snp", "tcb": json.Number("15354459979566284804"), "html": "<&>"}
	withData.Extra = map[string]any{"b": json.Number("1"), "a": []any{"x", true}, "nested": map[string]any{"z": nil}}
	tests := map[string]*Claims{
		"no extra":          sampleClaims(),
		"empty extra":       func() *Claims { c := sampleClaims(); c.Extra = map[string]any{}; return c }(),
		"one extra":         func() *Claims { c := sampleClaims(); c.Extra = map[string]any{"swclass": "db"}; return c }(),
		"everything":        withData,
		"several audiences": func() *Claims { c := sampleClaims(); c.Audience = Audience{"a", "b"}; return c }(),
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			if err := Stamp(c, "https://verifier.example", time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), DefaultTTL, strings.NewReader(strings.Repeat("r", 16))); err != nil {
				t.Fatal(err)
			}
			got, err := c.payload()
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Map()
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := decodeObject(t, got), decodeObject(t, want); !reflect.DeepEqual(g, w) {
				t.Errorf("payload %s\nMap     %s", got, want)
			}
		})
	}
	c := sampleClaims()
	c.Extra = map[string]any{"status": "affirming"}
	if _, err := c.payload(); err == nil {
		t.Error("payload let an extra claim replace status")
	}
	c.Extra = map[string]any{"bad": func() {}}
	if _, err := c.payload(); err == nil {
		t.Error("payload encoded a func")
	}
}

// TestFixedClaimsReserved: every claim Claims encodes itself is reserved,
// so that payload never writes a name twice.
func TestFixedClaimsReserved(t *testing.T) {
	typ := reflect.TypeFor[Claims]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if !reserved(name) {
			t.Errorf("claim %q (Claims.%s) is not reserved", name, typ.Field(i).Name)
		}
	}
}
