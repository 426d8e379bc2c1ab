package policies

import (
	"bytes"
	_ "embed"
)

//go:embed appraisal/sim_development.rego
var simDevelopmentAppraisal []byte

// SimDevelopmentAppraisal returns the source of
// appraisal/sim_development.rego, the development appraisal policy: it
// affirms sim-sev-snp evidence whose measurement and PCRs are reference
// values, with Secure Boot on.
func SimDevelopmentAppraisal() []byte { return bytes.Clone(simDevelopmentAppraisal) }
