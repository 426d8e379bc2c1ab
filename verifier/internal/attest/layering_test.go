package attest

import (
	"go/build"
	"slices"
	"testing"
)

// TestNoHTTP: the transactions do not speak HTTP; the handlers (package
// api) do, and call in. (A call back into api would not compile: api
// imports this package.)
func TestNoHTTP(t *testing.T) {
	p, err := build.Import("github.com/confidant-cvm/confidant/verifier/internal/attest", ".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.Imports, "net/http") {
		t.Error("package attest imports net/http")
	}
}
