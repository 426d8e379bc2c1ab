package policies_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/confidant-cvm/confidant/policies"
)

func TestSimDevelopmentAppraisalIsTheFile(t *testing.T) {
	b, err := os.ReadFile("appraisal/sim_development.rego")
	if err != nil {
		t.Fatal(err)
	}
	got := policies.SimDevelopmentAppraisal()
	if !bytes.Equal(got, b) {
		t.Fatal("SimDevelopmentAppraisal differs from appraisal/sim_development.rego")
	}
	// Each call returns a copy: changing one does not change the next.
	got[0] ^= 0xff
	if !bytes.Equal(policies.SimDevelopmentAppraisal(), b) {
		t.Fatal("SimDevelopmentAppraisal returned the embedded bytes, not a copy")
	}
}
