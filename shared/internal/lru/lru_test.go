package lru

import (
	"sync"
	"testing"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[int, string](2)
	c.Add(1, "one")
	c.Add(2, "two")
	if v, ok := c.Get(1); !ok || v != "one" {
		t.Fatalf("Get(1) = %q, %v", v, ok)
	}
	c.Add(3, "three") // evicts 2, used longest ago
	c.Add(1, "uno")   // replaces, no eviction
	tests := map[string]struct {
		key  int
		want string
		ok   bool
	}{
		"replaced": {key: 1, want: "uno", ok: true},
		"evicted":  {key: 2},
		"newest":   {key: 3, want: "three", ok: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if v, ok := c.Get(tt.key); ok != tt.ok || v != tt.want {
				t.Errorf("Get(%d) = %q, %v; want %q, %v", tt.key, v, ok, tt.want, tt.ok)
			}
		})
	}
	if c.Len() != 2 || c.Cap() != 2 {
		t.Errorf("Len, Cap = %d, %d; want 2, 2", c.Len(), c.Cap())
	}
	if New[int, int](0).Cap() != 1 {
		t.Error("capacity 0 is not raised to 1")
	}
}

// TestConcurrent is for the race detector.
func TestConcurrent(t *testing.T) {
	c := New[int, int](8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				c.Add(i%16, g)
				c.Get((i + g) % 16)
			}
		})
	}
	wg.Wait()
	if c.Len() > 8 {
		t.Fatalf("Len() = %d over capacity 8", c.Len())
	}
}
