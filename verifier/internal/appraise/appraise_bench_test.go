//go:build cgo

package appraise_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

type fixedPolicies struct{ set *policy.Set }

func (p fixedPolicies) Current() *policy.Set { return p.set }

// simAppraiser appraises the test guest g's evidence with the shipped
// development policy and reference values holding its measurement (named
// image) and its PCRs 0 and 7, trusting its simulated root, at a fixed now.
func simAppraiser(tb testing.TB, g *testguest.Guest, dir, image string) *appraise.Appraiser {
	tb.Helper()
	pcrs, err := g.PCRs()
	if err != nil {
		tb.Fatal(err)
	}
	m := testguest.Measurement()
	ref, err := json.Marshal(map[string]any{"version": 1, "sim-sev-snp": map[string]any{
		"measurements": map[string]any{hex.EncodeToString(m[:]): map[string]any{"name": image}},
		"pcrs":         map[string]any{"sha256": map[string]any{"0": []string{pcrs[0]}, "7": []string{pcrs[7]}}},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	refFile := filepath.Join(dir, "reference.json")
	if err := os.WriteFile(refFile, ref, 0o644); err != nil {
		tb.Fatal(err)
	}
	set, err := policy.Load(context.Background(), []string{"../../../policies/appraisal/sim_development.rego"}, refFile,
		policy.Options{Reserved: func(name string) bool { return name != "swname" && token.Reserved(name) }})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	a, err := appraise.New(appraise.Config{Policies: fixedPolicies{set}, SimRoot: g.Signer.RootCert(),
		Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// BenchmarkAppraise measures the appraisal without HTTP, the store or
// signing: decoding the envelope and runtime data, the simulated SNP report
// (chain cache warm after the first call), the vTPM evidence with a UEFI
// Secure Boot event log, and the shipped development policy. The evidence
// is made once: Appraise does not redeem nonces.
func BenchmarkAppraise(b *testing.B) {
	dir := b.TempDir()
	g, err := testguest.New(filepath.Join(dir, "signer"))
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	a := simAppraiser(b, g, dir, "bench-image")
	ctx := context.Background()
	body, err := g.EvidenceJSON(make([]byte, evidence.MinNonceSize), testguest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	aud := []string{"bench"}
	for b.Loop() {
		env, err := evidence.Decode(body)
		if err != nil {
			b.Fatal(err)
		}
		rd, err := evidence.ParseRuntimeData(env.RuntimeData)
		if err != nil {
			b.Fatal(err)
		}
		res, err := a.Appraise(ctx, env, rd, aud)
		if err != nil {
			b.Fatal(err)
		}
		if res.Decision.Verdict != token.Affirming {
			b.Fatalf("verdict %s: %v", res.Decision.Verdict, res.Decision.Reasons)
		}
	}
}
