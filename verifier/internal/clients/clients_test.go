package clients

import (
	"fmt"
	"testing"
	"time"
)

// TestClientBucketsBounded: the table of clients never holds more than its
// bound plus the shared overflow bucket; clients whose bucket is full again
// make room for new ones.
func TestClientBucketsBounded(t *testing.T) {
	c := New(1, 2)
	c.max = 3
	now := time.Unix(1000, 0)
	for i := range 100 {
		c.Take(fmt.Sprintf("10.0.0.%d", i), now, nil)
	}
	if n := c.Len(); n != c.max+1 {
		t.Fatalf("%d clients remembered, want %d (the bound and the overflow bucket)", n, c.max+1)
	}
	// The 97 clients past the bound shared one bucket of 2.
	if got := c.m[OverflowClient].lim.TokensAt(now); got > 0 {
		t.Fatalf("overflow bucket has %v tokens left", got)
	}
	// Later every bucket is full again: a new client gets its own.
	later := now.Add(time.Minute)
	if !c.Take("10.1.0.1", later, nil) {
		t.Fatal("a new client after the others went idle was refused")
	}
	if _, ok := c.m["10.1.0.1"]; !ok || c.Len() > c.max+1 {
		t.Fatalf("new client not remembered on its own (%d clients)", c.Len())
	}
}
