// Package clients keeps a token bucket per client (its remote IP) in a
// table bounded by MaxClients. The API's rate limit and the audit of
// failed attempts that prove nothing (package attest) each keep one.
package clients

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxClients bounds the clients the per-client limits (the rate limit and
// the audit of failed attempts) remember at once. Past it, clients whose
// bucket is full (idle long enough) are forgotten; when none is, new
// clients share one bucket, OverflowClient, until some are.
const MaxClients = 16384

// OverflowClient is the key of the bucket that clients share when
// MaxClients clients are remembered and none is idle.
const OverflowClient = "other"

// pruneEvery limits how often a full table is swept for idle clients.
const pruneEvery = time.Second

// Bucket is one client's token bucket, and what the audit sampler keeps
// about the failures it did not record.
type Bucket struct {
	lim *rate.Limiter
	// Suppressed counts failures not recorded since First; Codes counts
	// them by error code (a fixed set). A client with failures not yet
	// summarized is never forgotten.
	Suppressed  int
	First, Last time.Time
	Codes       map[string]int
}

// Buckets is a token bucket per client (its remote IP), in a table
// bounded by MaxClients. Safe for concurrent use.
type Buckets struct {
	limit     rate.Limit
	burst     int
	max       int
	mu        sync.Mutex
	m         map[string]*Bucket
	lastPrune time.Time
}

// New returns a table of buckets of perSecond tokens a second, burst
// (at least 1) at most.
func New(perSecond float64, burst int) *Buckets {
	return &Buckets{limit: rate.Limit(perSecond), burst: max(burst, 1), max: MaxClients, m: map[string]*Bucket{}}
}

// Take takes a token from client's bucket at now and reports whether
// there was one. With the bucket locked, f (when not nil) sees the result
// and the bucket.
func (c *Buckets) Take(client string, now time.Time, f func(ok bool, b *Bucket)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.lookup(client, now)
	ok := b.lim.AllowN(now, 1)
	if f != nil {
		f(ok, b)
	}
	return ok
}

// Each calls f on every client's bucket, with the table locked.
func (c *Buckets) Each(f func(client string, b *Bucket)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for client, b := range c.m {
		f(client, b)
	}
}

// lookup returns client's bucket, adding it (or, with the table full, the
// overflow bucket). c.mu is held.
func (c *Buckets) lookup(client string, now time.Time) *Bucket {
	if b, ok := c.m[client]; ok {
		return b
	}
	if len(c.m) >= c.max && now.Sub(c.lastPrune) >= pruneEvery {
		c.lastPrune = now
		c.prune(now)
	}
	if len(c.m) >= c.max {
		client = OverflowClient
		if b, ok := c.m[client]; ok {
			return b
		}
	}
	b := &Bucket{lim: rate.NewLimiter(c.limit, c.burst)}
	c.m[client] = b
	return b
}

// prune forgets the clients whose bucket is full again and that have no
// unreported failures: forgetting them changes nothing. c.mu is held.
func (c *Buckets) prune(now time.Time) {
	for k, b := range c.m {
		if b.Suppressed == 0 && b.lim.TokensAt(now) >= float64(c.burst) {
			delete(c.m, k)
		}
	}
}

// Len is the number of clients remembered.
func (c *Buckets) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
