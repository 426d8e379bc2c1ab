package snp

import "testing"

// TestChainCacheEvictsLeastRecentlyUsed: a full cache drops the entry used
// longest ago, and a lookup counts as a use.
func TestChainCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewChainCache(2)
	key := func(b byte) chainKey { return chainKey{b} }
	c.add(&verifiedChain{key: key(1)})
	c.add(&verifiedChain{key: key(2)})
	if c.get(key(1)) == nil {
		t.Fatal("entry 1 missing")
	}
	c.add(&verifiedChain{key: key(3)}) // evicts 2, used longest ago
	tests := map[string]struct {
		key  chainKey
		want bool
	}{
		"recently used": {key(1), true},
		"evicted":       {key(2), false},
		"newest":        {key(3), true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := c.get(tt.key) != nil; got != tt.want {
				t.Errorf("cached = %v, want %v", got, tt.want)
			}
		})
	}
	if n := c.Len(); n != 2 {
		t.Errorf("Len() = %d, want 2", n)
	}
	var nilCache *ChainCache
	nilCache.add(&verifiedChain{key: key(1)})
	if nilCache.get(key(1)) != nil || nilCache.Len() != 0 {
		t.Error("a nil cache returned an entry")
	}
	if NewChainCache(0).entries.Cap() != DefaultChainCacheSize {
		t.Error("size 0 is not the default size")
	}
}
