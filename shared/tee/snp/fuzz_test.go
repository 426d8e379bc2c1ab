package snp_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
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

// sentinels are the kinds of refusal Verify documents.
var sentinels = []error{snp.ErrMalformed, snp.ErrSignature, snp.ErrChain, snp.ErrTCBMismatch, snp.ErrDebug,
	snp.ErrMigrationAgent, snp.ErrSMT, snp.ErrVMPL, snp.ErrTCBTooLow, snp.ErrReportVersion, snp.ErrReportData,
	snp.ErrMeasurement}

// genuine are the signed parts of the seed reports: the only ones a
// signature can vouch for, since nobody else holds their keys.
var genuine = [][]byte{abi.SignedComponent(milanReport), abi.SignedComponent(simFixtureReport)}

func checkVerify(t *testing.T, report, table []byte, opts snp.Options) {
	t.Helper()
	claims, err := snp.Verify(report, table, opts)
	if err != nil {
		if strings.Contains(err.Error(), "panic") {
			t.Fatalf("Verify panicked: %v", err)
		}
		if claims != nil {
			t.Fatal("Verify returned claims with an error")
		}
		if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
		return
	}
	if claims == nil {
		t.Fatal("Verify returned no claims and no error")
	}
	// Verify never succeeds on a mutated signed part.
	signed := abi.SignedComponent(report)
	if !slices.ContainsFunc(genuine, func(g []byte) bool { return bytes.Equal(g, signed) }) {
		t.Fatalf("Verify accepted a report whose signed part was changed: %x", signed)
	}
	// The claims are the report's own fields.
	if want := hex.EncodeToString(report[0x50:0x90]); claims.ReportData != want {
		t.Fatalf("claims report_data %s, report has %s", claims.ReportData, want)
	}
	if want := hex.EncodeToString(report[0x90:0xC0]); claims.Measurement != want {
		t.Fatalf("claims measurement %s, report has %s", claims.Measurement, want)
	}
}
