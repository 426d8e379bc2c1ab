package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/policy"
)

// TestReleasePolicySandbox: a release policy that can reach the network,
// the process, the clock or randomness is refused when it is set, naming
// the built-in; the same sandbox as appraisal policies.
func TestReleasePolicySandbox(t *testing.T) {
	tests := map[string]struct{ builtin, expr string }{
		"network":    {"http.send", `http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200`},
		"DNS":        {"net.lookup_ip_addr", `count(net.lookup_ip_addr("example.com")) > 0`},
		"runtime":    {"opa.runtime", `opa.runtime().env.HOME != ""`},
		"clock":      {"time.now_ns", `time.now_ns() > 0`},
		"randomness": {"rand.intn", `rand.intn("x", 10) >= 0`},
		"UUID":       {"uuid.rfc4122", `uuid.rfc4122("x") != ""`},
		"print":      {"print", `print(input.sub)`},
	}
	ctx := context.Background()
	f := newFixture(t)
	if _, _, err := f.svc.Create(ctx, "k", nil, false); err != nil {
		t.Fatal(err)
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			src := fmt.Sprintf("package test.p\n\nok if {\n\t%s\n}\n\nresult := {\"allow\": ok, \"reasons\": []}\n", tt.expr)
			want := fmt.Sprintf("policy uses built-in %q, which is not allowed: policies must be pure and deterministic", tt.builtin)
			_, err := CheckPolicy(ctx, []byte(src))
			if !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, policy.ErrNotPure) || !strings.Contains(err.Error(), want) {
				t.Fatalf("CheckPolicy: %v, want %q", err, want)
			}
			if _, err := f.svc.SetPolicy(ctx, "k", []byte(src)); !errors.Is(err, policy.ErrNotPure) {
				t.Fatalf("SetPolicy: %v", err)
			}
		})
	}
}

// TestReleasePolicySeesNow: a release policy reads the verifier's clock as
// input.now (Unix nanoseconds), and a token claim named "now" cannot stand
// in for it.
func TestReleasePolicySeesNow(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// Releases only in the fixture's clock's second (t0).
	src := fmt.Sprintf(`package test.clock

result := {"allow": true, "reasons": []} if input.now == %d

result := {"allow": false, "reasons": [sprintf("now is %%v", [input.now])]} if input.now != %d
`, t0.UnixNano(), t0.UnixNano())
	if _, _, err := f.svc.Create(ctx, "k", []byte(src), false); err != nil {
		t.Fatal(err)
	}
	c := claims(t, &f.rsa.PublicKey)
	if _, err := f.svc.Release(ctx, Request{Name: "k", Claims: c}); err != nil {
		t.Fatalf("release at t0: %v", err)
	}
	c["now"] = t0.Add(time.Hour).UnixNano() // a claim does not replace the clock
	if _, err := f.svc.Release(ctx, Request{Name: "k", Claims: c}); err != nil {
		t.Fatalf("release with a forged now claim: %v", err)
	}
	f.svc.cfg.Now = func() time.Time { return t0.Add(time.Second) }
	_, err := f.svc.Release(ctx, Request{Name: "k", Claims: claims(t, &f.rsa.PublicKey)})
	var de *DeniedError
	if !errors.As(err, &de) || !contains(de.Reasons, fmt.Sprint(t0.Add(time.Second).UnixNano())) {
		t.Fatalf("release a second later: %v", err)
	}
}

// TestReleasePolicyIsBounded: a CPU-heavy release policy is stopped at the
// configured limit; the key stays, the error is an evaluation failure
// with policy.ErrTimeout, never a release.
func TestReleasePolicyIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.svc.cfg.PolicyTimeout = 200 * time.Millisecond
	src := `package test.heavy

result := {"allow": count([x | some i in numbers.range(1, 100000000); x := i]) > 0, "reasons": []}
`
	if _, _, err := f.svc.Create(ctx, "k", []byte(src), false); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Release(ctx, Request{Name: "k", Claims: claims(t, &f.rsa.PublicKey)})
	if !errors.Is(err, ErrPolicyEvaluation) || !errors.Is(err, policy.ErrTimeout) || res != nil {
		t.Fatalf("got %+v, %v; want ErrPolicyEvaluation and policy.ErrTimeout", res, err)
	}
}

// TestShippedReleasePoliciesInSandbox: every shipped release policy
// compiles in the sandbox.
func TestShippedReleasePoliciesInSandbox(t *testing.T) {
	files, err := filepath.Glob("../../../policies/release/*.rego")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		n++
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CheckPolicy(context.Background(), src); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if n < 3 {
		t.Fatalf("found %d shipped release policies", n)
	}
}
