package snp_test

import (
	"testing"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

func BenchmarkVerifyMilan(b *testing.B) {
	table := milanTable(b)
	opts := permissive()
	for b.Loop() {
		if _, err := snp.Verify(milanReport, table, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySimulated(b *testing.B) {
	opts := snp.Options{Now: simFixtureNow, SimRoot: parseRoot(b, simFixtureRoot), AllowSMT: true}
	for b.Loop() {
		if _, err := snp.Verify(simFixtureReport, simFixtureTable, opts); err != nil {
			b.Fatal(err)
		}
	}
}
