package snp_test

import (
	"testing"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

// BenchmarkVerifyMilanCached is BenchmarkVerifyMilan with a warm
// ChainCache: the report signature (one P-384 verification) and the report
// checks, without the chain's two RSA-4096 verifications.
func BenchmarkVerifyMilanCached(b *testing.B) {
	table := milanTable(b)
	opts := permissive()
	opts.ChainCache = snp.NewChainCache(0)
	for b.Loop() {
		if _, err := snp.Verify(milanReport, table, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifySimulatedCached is BenchmarkVerifySimulated with a warm
// ChainCache.
func BenchmarkVerifySimulatedCached(b *testing.B) {
	opts := snp.Options{Now: simFixtureNow, SimRoot: parseRoot(b, simFixtureRoot), AllowSMT: true,
		ChainCache: snp.NewChainCache(0)}
	for b.Loop() {
		if _, err := snp.Verify(simFixtureReport, simFixtureTable, opts); err != nil {
			b.Fatal(err)
		}
	}
}
