package policies_test

import (
	"os"
	"strings"
	"testing"
)

// simProductionEdits are the only differences between snp_production.rego
// and sim_production.rego outside comments: the package, the reference key
// and kind (every "sev-snp" becomes "sim-sev-snp"), and the trusted chain.
var simProductionEdits = []struct{ old, new string }{
	{"package confidant.appraisal.snp_production", "package confidant.appraisal.sim_production"},
	{"sev-snp", "sim-sev-snp"},
	{`deny contains "report was verified against a simulated root" if not input.tee.simulated == false`,
		`deny contains "report was not verified against the simulated root" if not input.tee.simulated == true`},
}

// TestSimProductionDiffersOnlyInTheChain derives sim_production's rules
// from snp_production's and requires the file to hold exactly those, so
// that the production logic the demo and the e2e suite exercise is the one
// shipped for SEV-SNP hardware.
func TestSimProductionDiffersOnlyInTheChain(t *testing.T) {
	snp := regoCode(t, "appraisal/snp_production.rego")
	sim := regoCode(t, "appraisal/sim_production.rego")
	want := snp
	for _, e := range simProductionEdits {
		if !strings.Contains(want, e.old) {
			t.Fatalf("snp_production.rego no longer holds %q: update simProductionEdits and sim_production.rego", e.old)
		}
		want = strings.ReplaceAll(want, e.old, e.new)
	}
	if sim == want {
		return
	}
	wl, sl := strings.Split(want, "\n"), strings.Split(sim, "\n")
	for i := 0; i < len(wl) || i < len(sl); i++ {
		var w, s string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(sl) {
			s = sl[i]
		}
		if w != s {
			t.Fatalf("sim_production.rego differs from snp_production.rego beyond the trusted chain at code line %d:\n derived: %q\n file:    %q", i+1, w, s)
		}
	}
}

// regoCode returns a Rego file without its comment lines.
func regoCode(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
