package snp

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/confidant-cvm/confidant/shared/internal/lru"
)

// DefaultChainCacheSize is the capacity of a ChainCache made with a size of
// zero or less: enough for every chip (VCEK) and TCB a verifier sees between
// restarts in a large fleet, at about 2 KiB per entry.
const DefaultChainCacheSize = 4096

// ChainCache remembers endorsement key certificates (VCEK or VLEK) whose
// chain to a trusted root Verify has checked, so that the RSA-4096
// signatures of the chain (ASK over the VCEK, ARK over the ASK) are verified
// once per certificate rather than once per report.
//
// An entry is keyed by SHA-256 over the endorsement key certificate's DER,
// the signing key kind, the product line the report names (version 3 and
// later) and the roots it was verified against (AMD's embedded roots, or the
// simulated ARK together with the ASK from the certificate table). A
// different certificate, root or product line is a different entry.
//
// What a cached entry skips is only the work that depends on those bytes
// alone: parsing the certificate and verifying the chain's signatures and
// structure. Every call still checks that each certificate of the chain is
// valid at Options.Now, verifies the report's signature with the cached key,
// and runs every report check. Only successful verifications are cached.
//
// A ChainCache holds at most its capacity of entries and evicts the least
// recently used one. It is safe for concurrent use. A nil *ChainCache
// caches nothing.
type ChainCache struct {
	entries *lru.Cache[chainKey, *verifiedChain]
}

// NewChainCache returns an empty cache that holds at most size verified
// chains; size zero or less means DefaultChainCacheSize.
func NewChainCache(size int) *ChainCache {
	if size <= 0 {
		size = DefaultChainCacheSize
	}
	return &ChainCache{entries: lru.New[chainKey, *verifiedChain](size)}
}

// Len returns the number of cached chains.
func (c *ChainCache) Len() int {
	if c == nil {
		return 0
	}
	return c.entries.Len()
}

type chainKey [sha256.Size]byte

// verifiedChain is an endorsement key certificate whose chain to a trusted
// root was verified. It is never modified after it is cached.
type verifiedChain struct {
	key  chainKey
	ek   *x509.Certificate
	exts *kds.Extensions
	// notBefore and notAfter bound the validity periods of every
	// certificate in the chain (endorsement key, ASK or ASVK, ARK).
	notBefore, notAfter time.Time
}

// validAt reports whether every certificate of the chain is valid at t, as
// x509.Certificate.Verify judges it.
func (v *verifiedChain) validAt(t time.Time) bool {
	return !t.Before(v.notBefore) && !t.After(v.notAfter)
}

func (c *ChainCache) get(k chainKey) *verifiedChain {
	if c == nil {
		return nil
	}
	v, _ := c.entries.Get(k)
	return v
}

func (c *ChainCache) add(v *verifiedChain) {
	if c != nil {
		c.entries.Add(v.key, v)
	}
}

// chainCacheKey names what a verified chain depends on: the endorsement key
// certificate, its kind, the product line named by the report ("" for
// version 2 reports) and the trusted roots (the simulated ARK and the
// table's ASK, or AMD's embedded roots).
func chainCacheKey(ekDER []byte, key abi.ReportSigner, reportProductLine string, simRoot *x509.Certificate, askDER []byte) chainKey {
	h := sha256.New()
	field := func(h hash.Hash, b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(h, []byte("confidant snp chain v1"))
	field(h, []byte{byte(key)})
	field(h, []byte(reportProductLine))
	if simRoot != nil {
		field(h, []byte("simulated"))
		field(h, simRoot.Raw)
		field(h, askDER)
	} else {
		field(h, []byte("amd"))
	}
	field(h, ekDER)
	var k chainKey
	h.Sum(k[:0])
	return k
}

// newVerifiedChain records ek, whose chain verify.SnpAttestation has just
// verified against roots, with the validity window of that chain. It
// returns nil when the chain's certificates cannot be named unambiguously
// (more than one root for the product line), so that nothing is cached.
func newVerifiedChain(k chainKey, ek *x509.Certificate, exts *kds.Extensions, key abi.ReportSigner,
	roots map[string][]*trust.AMDRootCerts, product string) *verifiedChain {
	list := roots[product]
	if len(list) != 1 || list[0].ProductCerts == nil {
		return nil
	}
	pc := list[0].ProductCerts
	ica := pc.Ask
	if key == abi.VlekReportSigner {
		ica = pc.Asvk
	}
	if ica == nil || pc.Ark == nil {
		return nil
	}
	v := &verifiedChain{key: k, ek: ek, exts: exts, notBefore: ek.NotBefore, notAfter: ek.NotAfter}
	for _, c := range []*x509.Certificate{ica, pc.Ark} {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	return v
}
