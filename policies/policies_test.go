// Package policies_test runs the Rego unit tests of the shipped policies
// with OPA's tester, so that `go test ./...` (and `make test`) runs them.
package policies_test

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

func TestRegoPolicies(t *testing.T) {
	results, err := tester.Run(context.Background(), "appraisal")
	if err != nil {
		t.Fatalf("running Rego tests: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests found")
	}
	for _, r := range results {
		name := r.Package + "." + r.Name
		switch {
		case r.Error != nil:
			t.Errorf("%s: error: %v", name, r.Error)
		case r.Skip:
			t.Errorf("%s: skipped (todo_ tests are not allowed)", name)
		case r.Fail:
			t.Errorf("%s: FAIL", name)
		default:
			t.Logf("%s: PASS (%v)", name, r.Duration)
		}
	}
}
