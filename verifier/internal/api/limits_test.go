package api

import (
	"fmt"
	"testing"
	"time"
)

// TestClientBucketsBounded: the table of clients never holds more than its
// bound plus the shared overflow bucket; clients whose bucket is full again
// make room for new ones.
func TestClientBucketsBounded(t *testing.T) {
	c := newClientBuckets(1, 2)
	c.max = 3
	now := time.Unix(1000, 0)
	for i := range 100 {
		c.take(fmt.Sprintf("10.0.0.%d", i), now, nil)
	}
	if n := c.len(); n != c.max+1 {
		t.Fatalf("%d clients remembered, want %d (the bound and the overflow bucket)", n, c.max+1)
	}
	// The 97 clients past the bound shared one bucket of 2.
	if got := c.m[OverflowClient].lim.TokensAt(now); got > 0 {
		t.Fatalf("overflow bucket has %v tokens left", got)
	}
	// Later every bucket is full again: a new client gets its own.
	later := now.Add(time.Minute)
	if !c.take("10.1.0.1", later, nil) {
		t.Fatal("a new client after the others went idle was refused")
	}
	if _, ok := c.m["10.1.0.1"]; !ok || c.len() > c.max+1 {
		t.Fatalf("new client not remembered on its own (%d clients)", c.len())
	}
}

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
