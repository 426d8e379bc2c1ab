package snp_test

import (
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

// FuzzVerify feeds hostile reports and certificate tables to Verify. It must
// return an error, never panic — not even a panic that Verify recovers from.
func FuzzVerify(f *testing.F) {
	f.Add(milanReport, milanTable(f))
	f.Add(milanReport, []byte{})
	f.Add(flip(milanReport, offPolicy+2, 0x02), milanTable(f))
	f.Add(simFixtureReport, simFixtureTable)
	root := parseRoot(f, simFixtureRoot)
	f.Fuzz(func(t *testing.T, report, table []byte) {
		// Also try the report cut or padded to the right size, so mutations
		// reach past the size check.
		fitted := make([]byte, abi.ReportSize)
		copy(fitted, report)
		for _, opts := range []snp.Options{permissive(), {Now: simFixtureNow, SimRoot: root, AllowSMT: true}} {
			for _, r := range [][]byte{report, fitted} {
				checkVerify(t, r, table, opts)
			}
		}
	})
}

func checkVerify(t *testing.T, report, table []byte, opts snp.Options) {
	t.Helper()
	claims, err := snp.Verify(report, table, opts)
	if err != nil {
		if strings.Contains(err.Error(), "panic") {
			t.Fatalf("Verify panicked: %v", err)
		}
		return
	}
	if claims == nil {
		t.Fatal("Verify returned no claims and no error")
	}
}
