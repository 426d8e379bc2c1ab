//go:build cgo

package appraise_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

type sandboxSet struct{ set *policy.Set }

func (p sandboxSet) Current() *policy.Set { return p.set }

// sandboxAppraise appraises fresh evidence of g with the policy src under
// the clock now.
func sandboxAppraise(t *testing.T, g *testguest.Guest, src string, opts policy.Options, now time.Time) (*appraise.Result, error) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "p.rego")
	ref := filepath.Join(dir, "ref.json")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ref, []byte(`{"version": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(context.Background(), []string{file}, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := appraise.New(appraise.Config{Policies: sandboxSet{set}, SimRoot: g.Signer.RootCert(),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	env, err := g.Evidence(make([]byte, evidence.MinNonceSize), testguest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	return a.Appraise(context.Background(), env, rd, []string{"test"})
}

// TestAppraisalPolicySeesInjectedClock: the policy's input.now is the
// appraiser's clock (Unix nanoseconds), not the machine's.
func TestAppraisalPolicySeesInjectedClock(t *testing.T) {
	g, err := testguest.New(filepath.Join(t.TempDir(), "signer"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	at := time.Now().Add(-time.Hour).Truncate(time.Second).Add(42 * time.Nanosecond)
	src := fmt.Sprintf(`package test.clock

kinds := {"sim-sev-snp"}

want := %d

result := {"verdict": "affirming", "reasons": [], "claims": {"seen_now": input.now}} if input.now == want

result := {"verdict": "contraindicated", "reasons": [sprintf("input.now is %%v", [input.now])]} if input.now != want
`, at.UnixNano())
	res, err := sandboxAppraise(t, g, src, policy.Options{}, at)
	if err != nil {
		t.Fatalf("at the injected time: %v", err)
	}
	if got := fmt.Sprint(res.Claims.Extra["seen_now"]); got != fmt.Sprint(at.UnixNano()) {
		t.Fatalf("policy saw now = %s, want %d", got, at.UnixNano())
	}
	later := at.Add(time.Second)
	_, err = sandboxAppraise(t, g, src, policy.Options{}, later)
	if !errors.Is(err, appraise.ErrPolicyDenied) || !strings.Contains(err.Error(), fmt.Sprint(later.UnixNano())) {
		t.Fatalf("a second later: %v", err)
	}
}

// TestCPUHeavyAppraisalPolicyStopped: an appraisal policy that would run
// for minutes is stopped at its limit; the appraisal fails (ErrTimeout,
// an evaluation error), it never affirms.
func TestCPUHeavyAppraisalPolicyStopped(t *testing.T) {
	g, err := testguest.New(filepath.Join(t.TempDir(), "signer"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	src := `package test.heavy

kinds := {"sim-sev-snp"}

result := {"verdict": "affirming", "reasons": []} if count([x | some i in numbers.range(1, 100000000); x := i]) > 0
`
	res, err := sandboxAppraise(t, g, src, policy.Options{Timeout: 200 * time.Millisecond}, time.Now())
	if !errors.Is(err, policy.ErrTimeout) || !errors.Is(err, policy.ErrEvaluation) || res != nil {
		t.Fatalf("got %+v, %v; want policy.ErrTimeout", res, err)
	}
}
