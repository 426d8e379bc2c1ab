// Package policies holds Confidant's shipped Rego policies (appraisal/ and
// release/) and their tests; the verifier takes the default release policy
// from here.
package policies

import (
	"bytes"
	_ "embed"
)

//go:embed release/default.rego
var defaultRelease []byte

// DefaultRelease returns the source of release/default.rego, the release
// policy of keys created without one.
func DefaultRelease() []byte { return bytes.Clone(defaultRelease) }
