package offline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/verifier/internal/policy"
)

// TestAppraiseOfflineSandbox: `confidant-verifier appraise` compiles the
// policy in the same sandbox as serve (a clock read is refused, naming the
// built-in), and --now is the policy's input.now.
func TestAppraiseOfflineSandbox(t *testing.T) {
	g := readGolden(t)
	root, err := parseCert(g.simRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, verdictIf string) string {
		p := filepath.Join(dir, name)
		src := fmt.Sprintf(`package test.offline

kinds := {"sim-sev-snp"}

result := {"verdict": "affirming", "reasons": [], "claims": {"seen_now": input.now}} if %s
`, verdictIf)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	in := AppraiseInput{
		Evidence: g.evidence, PolicyFiles: []string{write("clock.rego", "time.now_ns() > 0")},
		ReferenceFile: filepath.Join(goldenDir, "reference.json"), Now: g.now, SimRoot: root,
	}
	_, err = Appraise(context.Background(), in)
	if !errors.Is(err, policy.ErrNotPure) || !strings.Contains(err.Error(), `policy uses built-in "time.now_ns", which is not allowed`) {
		t.Fatalf("clock policy: %v", err)
	}
	in.PolicyFiles = []string{write("now.rego", "input.now > 0")}
	claims, err := Appraise(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(claims["seen_now"]); got != fmt.Sprint(g.now.UnixNano()) {
		t.Fatalf("policy saw now = %s, want --now %d", got, g.now.UnixNano())
	}
}
