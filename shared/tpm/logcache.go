package tpm

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"

	"github.com/confidant-cvm/confidant/shared/internal/lru"
)

// DefaultLogCacheSize is the capacity of a LogCache made with a size of
// zero or less.
const DefaultLogCacheSize = 1024

// LogCache remembers the claims Verify extracts from an event log that
// replayed: the Secure Boot state, the firmware version and the EFI
// applications. Extracting them (go-eventlog parses every certificate and
// hash of the Secure Boot databases) costs several times the quote's
// signature, and a guest sends the same log every time it attests during
// one boot.
//
// An entry is keyed by SHA-256 over the raw log, the PCR bank and the set of
// quoted PCRs, which together determine the events the extraction reads.
// What a cached entry skips is only that extraction: every call still
// verifies the quote, parses the log and replays it against the quoted PCR
// values, checks its event types and unlogged PCRs, and summarizes its
// events. Only logs that replayed are cached.
//
// A LogCache holds at most its capacity of entries and evicts the least
// recently used one. It is safe for concurrent use. A nil *LogCache caches
// nothing.
type LogCache struct {
	entries *lru.Cache[logKey, *logClaims]
}

// NewLogCache returns an empty cache that holds at most size logs' claims;
// size zero or less means DefaultLogCacheSize.
func NewLogCache(size int) *LogCache {
	if size <= 0 {
		size = DefaultLogCacheSize
	}
	return &LogCache{entries: lru.New[logKey, *logClaims](size)}
}

// Len returns the number of cached logs.
func (c *LogCache) Len() int {
	if c == nil {
		return 0
	}
	return c.entries.Len()
}

type logKey [sha256.Size]byte

// logClaims are the extracted claims of one log. Never modified once
// cached; readers copy the slices out.
type logClaims struct {
	secureBoot       SecureBoot
	firmwareVersion  string
	efiApps          []string
	extractionErrors []string
}

func logCacheKey(raw []byte, pcrs *tpmpb.PCRs) logKey {
	h := sha256.New()
	h.Write([]byte("confidant tpm log claims v1\x00"))
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(pcrs.GetHash()))
	h.Write(n[:4])
	idx := make([]uint32, 0, len(pcrs.GetPcrs()))
	for i := range pcrs.GetPcrs() {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	binary.BigEndian.PutUint64(n[:], uint64(len(idx)))
	h.Write(n[:])
	for _, i := range idx {
		binary.BigEndian.PutUint32(n[:4], i)
		h.Write(n[:4])
	}
	h.Write(raw)
	var k logKey
	h.Sum(k[:0])
	return k
}

func (c *LogCache) get(k logKey) (*logClaims, bool) {
	if c == nil {
		return nil, false
	}
	return c.entries.Get(k)
}

func (c *LogCache) add(k logKey, v *logClaims) {
	if c != nil {
		c.entries.Add(k, v)
	}
}

// apply copies the cached claims into res.
func (v *logClaims) apply(res *logResult) {
	res.secureBoot = v.secureBoot
	res.events.FirmwareVersion = v.firmwareVersion
	res.events.EFIApps = slices.Clone(v.efiApps)
	res.extractionErrors = slices.Clone(v.extractionErrors)
}

// claimsOf records the extracted claims of res.
func claimsOf(res *logResult) *logClaims {
	return &logClaims{
		secureBoot:       res.secureBoot,
		firmwareVersion:  res.events.FirmwareVersion,
		efiApps:          slices.Clone(res.events.EFIApps),
		extractionErrors: slices.Clone(res.extractionErrors),
	}
}
