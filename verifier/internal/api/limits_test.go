package api

import (
	"testing"
)

func TestIsJSON(t *testing.T) {
	for v, want := range map[string]bool{
		"application/json":                true,
		"application/json; charset=utf-8": true,
		"APPLICATION/JSON;CHARSET=UTF-8":  true,
		"application/json; charset=ascii": false,
		"application/json; q=1":           false,
		"application/jsonx":               false,
		"text/json":                       false,
		"application/jwk-set+json":        false,
		"":                                false,
		"application/json; charset":       false,
	} {
		if got := isJSON(v); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", v, got, want)
		}
	}
}
