package snp_test

import (
	"crypto/x509"
	_ "embed"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

var update = flag.Bool("update", false, "regenerate the simulated fixture in testdata/")

// A simulated report (REPORT_DATA 0xaa00…, default policy) with its
// certificate table and root, made by TestUpdateSimFixture -update. It
// keeps the fuzz target free of slow RSA key generation.
var (
	//go:embed testdata/sim-root.pem
	simFixtureRoot []byte
	//go:embed testdata/sim-report.bin
	simFixtureReport []byte
	//go:embed testdata/sim-certtable.bin
	simFixtureTable []byte
)

// simFixtureNow lies within the fixture chain's validity (made 2026-11-26,
// VCEK valid for 7 years).
func simFixtureNow() time.Time { return time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC) }

func TestUpdateSimFixture(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate")
	}
	s, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	report, table, err := s.Sign(simRequest())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"sim-root.pem": s.RootPEM(), "sim-report.bin": report, "sim-certtable.bin": table} {
		if err := os.WriteFile("testdata/"+name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSimFixture(t *testing.T) {
	root := parseRoot(t, simFixtureRoot)
	opts := snp.Options{SimRoot: root, Now: simFixtureNow, AllowSMT: true, ReportData: simRequestData()}
	claims, err := snp.Verify(simFixtureReport, simFixtureTable, opts)
	if err != nil {
		t.Fatalf("Verify(fixture): %v", err)
	}
	if !claims.Simulated {
		t.Errorf("claims.Simulated = false")
	}
	opts.SimRoot = nil
	if _, err := snp.Verify(simFixtureReport, simFixtureTable, opts); err == nil {
		t.Error("fixture verified against AMD's roots")
	}
}

func parseRoot(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	c, err := snp.ParseSimRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func simRequestData() []byte {
	req := simRequest()
	return req.ReportData[:]
}
