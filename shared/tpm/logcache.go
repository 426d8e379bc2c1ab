package tpm

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"

	"github.com/confidant-cvm/confidant/shared/internal/lru"
)

// DefaultLogCacheSize is the capacity of a LogCache made with a size of
// zero or less.
const DefaultLogCacheSize = 1024

// LogCache remembers the outcome of replaying an event log against quoted
// PCR values: the event summary and the claims extracted from the log (the
// Secure Boot state, the firmware version, the EFI applications). Parsing
// and replaying a log and extracting its claims (go-eventlog parses every
// certificate and hash of the Secure Boot databases) costs several times
// the quote's signature, and every guest booted from the same image on the
// same firmware sends the same log with the same PCR values — as does one
// guest each time it attests during one boot.
//
// An entry is keyed by SHA-256 over the raw log, the PCR bank, every quoted
// PCR's index and value, and the replay options. The outcome of a replay is
// a function of exactly these, and the PCR values are those of a quote
// whose signature and PCR digest Verify checked in this call before it
// looks the log up; so a hit stands for a replay that would succeed with
// the same result. A log sent with any other PCR value misses and is
// replayed (and fails unless it matches those values too). Only logs that
// replayed are cached.
//
// A LogCache holds at most its capacity of entries and evicts the least
// recently used one. It is safe for concurrent use. A nil *LogCache caches
// nothing.
type LogCache struct {
	entries *lru.Cache[logKey, *logResult]
}

// NewLogCache returns an empty cache that holds at most size logs' claims;
// size zero or less means DefaultLogCacheSize.
func NewLogCache(size int) *LogCache {
	if size <= 0 {
		size = DefaultLogCacheSize
	}
	return &LogCache{entries: lru.New[logKey, *logResult](size)}
}

// Len returns the number of cached logs.
func (c *LogCache) Len() int {
	if c == nil {
		return 0
	}
	return c.entries.Len()
}

type logKey [sha256.Size]byte

func logCacheKey(raw []byte, pcrs *tpmpb.PCRs, allowEmpty, withClaims bool) logKey {
	h := sha256.New()
	h.Write([]byte("confidant tpm log replay v2\x00"))
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(pcrs.GetHash()))
	h.Write(n[:4])
	var flags byte
	if allowEmpty {
		flags |= 1
	}
	if withClaims {
		flags |= 2
	}
	h.Write([]byte{flags})
	idx := make([]uint32, 0, len(pcrs.GetPcrs()))
	for i := range pcrs.GetPcrs() {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	binary.BigEndian.PutUint64(n[:], uint64(len(idx)))
	h.Write(n[:])
	for _, i := range idx {
		v := pcrs.GetPcrs()[i]
		binary.BigEndian.PutUint32(n[:4], i)
		h.Write(n[:4])
		binary.BigEndian.PutUint32(n[:4], uint32(len(v)))
		h.Write(n[:4])
		h.Write(v)
	}
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	h.Write(n[:])
	h.Write(raw)
	var k logKey
	h.Sum(k[:0])
	return k
}

func (c *LogCache) get(k logKey) (logResult, bool) {
	if c == nil {
		return logResult{}, false
	}
	v, ok := c.entries.Get(k)
	if !ok {
		return logResult{}, false
	}
	return v.clone(), true
}

func (c *LogCache) add(k logKey, v logResult) {
	if c != nil {
		r := v.clone()
		c.entries.Add(k, &r)
	}
}

// clone returns a deep copy: a cached result is never modified, and
// callers own what they get.
func (r logResult) clone() logResult {
	r.events.PerPCR = maps.Clone(r.events.PerPCR)
	r.events.Separators = slices.Clone(r.events.Separators)
	r.events.EFIApps = slices.Clone(r.events.EFIApps)
	r.extractionErrors = slices.Clone(r.extractionErrors)
	return r
}
