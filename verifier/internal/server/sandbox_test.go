//go:build cgo

package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

func notPure(builtin string) string {
	return fmt.Sprintf("policy uses built-in %q, which is not allowed: policies must be pure and deterministic", builtin)
}

// TestAdminRefusesImpurePolicies: an appraisal or release policy that
// would reach the network, the process or the clock is refused by the
// admin API with 400 invalid_policy, and the reason names the built-in.
func TestAdminRefusesImpurePolicies(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ac := f.adminClient()
	ctx := context.Background()
	appraisal := `package p

kinds := {"sim-sev-snp"}

result := {"verdict": "affirming", "reasons": []} if http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200
`
	release := `package r

result := {"allow": time.now_ns() > 0, "reasons": []}
`
	env := `package r

result := {"allow": opa.runtime().env.HOME != "", "reasons": []}
`
	if _, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "os-disk"}); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		op      func() error
		builtin string
	}{
		"appraisal policy": {op: func() error { _, err := ac.LoadPolicy(ctx, "sim-sev-snp", []byte(appraisal)); return err }, builtin: "http.send"},
		"new key": {op: func() error {
			_, err := ac.CreateKey(ctx, adminclient.CreateKeyRequest{Name: "k", ReleasePolicy: release})
			return err
		}, builtin: "time.now_ns"},
		"key policy": {op: func() error { _, err := ac.SetReleasePolicy(ctx, "os-disk", env); return err }, builtin: "opa.runtime"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tt.op()
			var e *adminclient.Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != api.CodeInvalidPolicy ||
				!hasReason(e.Reasons, notPure(tt.builtin)) {
				t.Fatalf("got %v, want 400 %s naming %s", err, api.CodeInvalidPolicy, tt.builtin)
			}
		})
	}
	// The policy in use did not change.
	if c := claimsOf(t, f.token(testguest.Options{}, "")); c["development"] != true {
		t.Fatalf("a refused load changed the policy: %v", c)
	}
}

// TestPolicyTimeoutServed: serve's policy time limit reaches appraisal
// policies (from files and from the admin API) and key release.
func TestPolicyTimeoutServed(t *testing.T) {
	const limit = 345 * time.Millisecond
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.PolicyTimeout = limit }})
	p, err := f.srv.Policies.Current().For("sim-sev-snp")
	if err != nil || p.Timeout() != limit {
		t.Fatalf("appraisal policy bound %v (%v), want %v", p.Timeout(), err, limit)
	}
	src, err := os.ReadFile(simDevPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.adminClient().LoadPolicy(context.Background(), "sim-sev-snp", append(src, '\n')); err != nil {
		t.Fatal(err)
	}
	if p, _ := f.srv.Policies.Current().For("sim-sev-snp"); p.File == simDevPolicy(t) || p.Timeout() != limit {
		t.Fatalf("admin-loaded policy %s bound %v, want %v", p.File, p.Timeout(), limit)
	}
	if got := f.srv.Release.PolicyTimeout(); got != limit {
		t.Fatalf("release policy bound %v, want %v", got, limit)
	}
}

// TestPolicyTimeoutConfig: --policy-timeout defaults to the policy
// package's bound and refuses nonsense.
func TestPolicyTimeoutConfig(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, time.Nanosecond, time.Minute} {
		c := DefaultConfig()
		c.Policies, c.ReferenceValues, c.PolicyTimeout = []string{"p.rego"}, "r.json", d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--policy-timeout") {
			t.Errorf("PolicyTimeout %v: %v", d, err)
		}
	}
	if d := DefaultConfig().PolicyTimeout; d <= 0 {
		t.Errorf("default PolicyTimeout %v", d)
	}
}
