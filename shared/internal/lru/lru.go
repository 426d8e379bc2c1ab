// Package lru is a bounded map that evicts the least recently used entry,
// safe for concurrent use. The verification caches of shared/ (verified SNP
// certificate chains, claims extracted from TPM event logs) are built on
// it.
package lru

import (
	"container/list"
	"sync"
)

// Cache holds at most its capacity of entries. The zero value is not
// usable; call New.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]*list.Element
	order   *list.List // front: most recently used; values are *entry[K, V]
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// New returns an empty cache of capacity size, at least 1.
func New[K comparable, V any](size int) *Cache[K, V] {
	return &Cache[K, V]{max: max(size, 1), entries: make(map[K]*list.Element), order: list.New()}
}

// Get returns the value cached for k and marks it used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*entry[K, V]).val, true
}

// Add caches v for k, replacing any value cached for k, and evicts the
// least recently used entries beyond the capacity.
func (c *Cache[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.Value.(*entry[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	c.entries[k] = c.order.PushFront(&entry[K, V]{key: k, val: v})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		delete(c.entries, oldest.Value.(*entry[K, V]).key)
		c.order.Remove(oldest)
	}
}

// Len returns the number of cached entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Cap returns the capacity.
func (c *Cache[K, V]) Cap() int { return c.max }
