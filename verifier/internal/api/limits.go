package api

import (
	"mime"
	"net/http"
	"strings"
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

// bucket is one client's token bucket, and what the audit sampler keeps
// about the failures it did not record.
type bucket struct {
	lim *rate.Limiter
	// suppressed counts failures not recorded since first; codes counts
	// them by error code (a fixed set).
	suppressed  int
	first, last time.Time
	codes       map[string]int
}

// clientBuckets is a token bucket per client (its remote IP), in a table
// bounded by MaxClients. Safe for concurrent use.
type clientBuckets struct {
	limit     rate.Limit
	burst     int
	max       int
	mu        sync.Mutex
	m         map[string]*bucket
	lastPrune time.Time
}

func newClientBuckets(perSecond float64, burst int) *clientBuckets {
	return &clientBuckets{limit: rate.Limit(perSecond), burst: max(burst, 1), max: MaxClients, m: map[string]*bucket{}}
}

// take takes a token from client's bucket at now and reports whether
// there was one. With the bucket locked, f (when not nil) sees the result
// and the bucket.
func (c *clientBuckets) take(client string, now time.Time, f func(ok bool, b *bucket)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.lookup(client, now)
	ok := b.lim.AllowN(now, 1)
	if f != nil {
		f(ok, b)
	}
	return ok
}

// lookup returns client's bucket, adding it (or, with the table full, the
// overflow bucket). c.mu is held.
func (c *clientBuckets) lookup(client string, now time.Time) *bucket {
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
	b := &bucket{lim: rate.NewLimiter(c.limit, c.burst)}
	c.m[client] = b
	return b
}

// prune forgets the clients whose bucket is full again and that have no
// unreported failures: forgetting them changes nothing. c.mu is held.
func (c *clientBuckets) prune(now time.Time) {
	for k, b := range c.m {
		if b.suppressed == 0 && b.lim.TokensAt(now) >= float64(c.burst) {
			delete(c.m, k)
		}
	}
}

// len is the number of clients remembered.
func (c *clientBuckets) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// rateLimit refuses POST requests over the per-client rate (429
// rate_limited). A client is its remote IP: clients behind one proxy or
// NAT — or guests whose traffic hostd relays — share one bucket.
func (h *handler) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.limiter != nil && !h.limiter.take(remoteHost(r), h.now(), nil) {
			h.writeError(w, r, errRateLimited)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSON refuses a request body that is not declared as JSON (415
// unsupported_media_type): a request with a body, or with a Content-Type,
// must say application/json, with no parameter but charset=utf-8. A
// request without a body (the challenge, a release of the latest version)
// may omit Content-Type.
func (h *handler) requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Values("Content-Type")
		if (len(ct) == 0 && r.ContentLength != 0) || len(ct) > 1 || (len(ct) == 1 && !isJSON(ct[0])) {
			h.writeError(w, r, errMediaType)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isJSON reports whether a Content-Type value is application/json with at
// most a charset=utf-8 parameter.
func isJSON(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, p := range params {
		if k != "charset" || !strings.EqualFold(p, "utf-8") {
			return false
		}
	}
	return true
}
