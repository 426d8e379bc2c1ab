// Package policies_test runs the Rego unit tests of the shipped policies
// with OPA's tester, so that `go test ./...` (and `make test`) runs them.
package policies_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/confidant-cvm/confidant/policies"
)

func TestRegoPolicies(t *testing.T) {
	for _, dir := range []string{"appraisal", "release"} {
		t.Run(dir, func(t *testing.T) { runRegoTests(t, dir) })
	}
}

func runRegoTests(t *testing.T, dir string) {
	results, err := tester.Run(context.Background(), dir)
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

func TestDefaultReleaseIsTheFile(t *testing.T) {
	b, err := os.ReadFile("release/default.rego")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(policies.DefaultRelease(), b) {
		t.Fatal("DefaultRelease differs from release/default.rego")
	}
}
