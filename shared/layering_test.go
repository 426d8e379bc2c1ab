package shared_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// forbidden are the component trees that shared/ must never depend on:
// shared is the leaf every component stands on.
var forbidden = []string{"agent", "verifier", "hostd", "images", "integration"}

const module = "github.com/confidant-cvm/confidant/"

type goPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// TestSharedIsALeaf fails when any package under shared/ (including its
// tests) imports a component package.
func TestSharedIsALeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "-test=false", module+"shared/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		n++
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if bad := violates(imp); bad != "" {
				t.Errorf("%s imports %s: shared/ must not depend on %s/", p.ImportPath, imp, bad)
			}
		}
	}
	if n == 0 {
		t.Fatal("go list found no packages under shared/")
	}
}

func violates(imp string) string {
	rest, ok := strings.CutPrefix(imp, module)
	if !ok {
		return ""
	}
	top, _, _ := strings.Cut(rest, "/")
	for _, f := range forbidden {
		if top == f {
			return f
		}
	}
	return ""
}

func TestViolates(t *testing.T) {
	tests := map[string]struct {
		imp  string
		want string
	}{
		"component":    {imp: module + "verifier/internal/store", want: "verifier"},
		"agent":        {imp: module + "agent", want: "agent"},
		"shared":       {imp: module + "shared/evidence", want: ""},
		"stdlib":       {imp: "crypto/sha256", want: ""},
		"lookalike":    {imp: module + "agentx/foo", want: ""},
		"other module": {imp: "github.com/other/agent", want: ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := violates(tt.imp); got != tt.want {
				t.Errorf("violates(%q) = %q, want %q", tt.imp, got, tt.want)
			}
		})
	}
}
