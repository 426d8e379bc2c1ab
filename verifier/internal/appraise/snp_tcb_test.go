//go:build cgo

package appraise_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-sev-guest/kds"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// tcbPolicy affirms sim-sev-snp evidence whose committed SNP level is at
// least the reference minimum, and copies the four TCBs it saw into a
// claim: the test sees both the policy input and the token's tee claims.
const tcbPolicy = `package test.tcb

kinds := {"sim-sev-snp"}

ref := data.reference["sim-sev-snp"]

committed_ok if input.tee.committed_tcb.snp >= ref.minimum_committed_snp

deny contains "committed SNP level below the minimum" if not committed_ok

default verdict := "affirming"

verdict := "contraindicated" if count(deny) > 0

result := {
	"verdict": verdict,
	"reasons": sort(deny),
	"claims": {"seen_tcb": {name: input.tee[name] | some name in ["current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"]}},
}
`

type fixedSet struct{ set *policy.Set }

func (p fixedSet) Current() *policy.Set { return p.set }

// TestAppraiseSNPCurrentTCBAboveCommitted runs reports through the whole
// appraisal: a current TCB newer than the committed one (a host after a
// runtime microcode update) is affirmed and every TCB reaches the policy
// and the token; a committed TCB above the current one is denied before the
// policy runs; a minimum over the committed TCB is the policy's.
func TestAppraiseSNPCurrentTCBAboveCommitted(t *testing.T) {
	dir := t.TempDir()
	g, err := testguest.New(filepath.Join(dir, "signer"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tcb := func(change func(p *kds.TCBParts)) uint64 {
		p := g.Signer.TCB()
		change(&p)
		v, err := kds.ComposeTCBParts(p)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(v)
	}
	base := g.Signer.TCB()
	edit := func(current, committed uint64) func([]byte) ([]byte, error) {
		return func(r []byte) ([]byte, error) {
			binary.LittleEndian.PutUint64(r[0x38:], current)    // CURRENT_TCB
			binary.LittleEndian.PutUint64(r[0x1E0:], committed) // COMMITTED_TCB
			return g.Signer.Resign(r)
		}
	}
	newer := tcb(func(p *kds.TCBParts) { p.SnpSpl++; p.UcodeSpl++ })
	same := tcb(func(*kds.TCBParts) {})
	tests := map[string]struct {
		report      func([]byte) ([]byte, error)
		minimum     uint8 // minimum_committed_snp
		wantErr     error
		wantCurrent uint8 // current_tcb.snp in the token
	}{
		"current above committed":        {report: edit(newer, same), minimum: base.SnpSpl, wantCurrent: base.SnpSpl + 1},
		"equal":                          {report: edit(same, same), minimum: base.SnpSpl, wantCurrent: base.SnpSpl},
		"committed above current":        {report: edit(same, newer), minimum: 0, wantErr: snp.ErrCommittedTCB},
		"committed below policy minimum": {report: edit(newer, same), minimum: base.SnpSpl + 1, wantErr: appraise.ErrPolicyDenied},
	}
	ctx := context.Background()
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := tcbAppraiser(t, filepath.Join(dir, name), g, tt.minimum)
			env, err := g.Evidence(make([]byte, evidence.MinNonceSize), testguest.Options{Report: tt.report})
			if err != nil {
				t.Fatal(err)
			}
			rd, err := evidence.ParseRuntimeData(env.RuntimeData)
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.Appraise(ctx, env, rd, []string{"test"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Appraise() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Appraise() error = %v", err)
			}
			checkTCBClaims(t, res, tt.wantCurrent, base)
		})
	}
}

// checkTCBClaims checks the token's tee claims and what the policy saw.
func checkTCBClaims(t *testing.T, res *appraise.Result, wantCurrent uint8, base kds.TCBParts) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"tee": res.Claims.TEE, "seen": res.Claims.Extra["seen_tcb"]})
	if err != nil {
		t.Fatal(err)
	}
	type tcbJSON struct {
		BL        *uint8 `json:"bl"`
		TEE       *uint8 `json:"tee"`
		SNP       *uint8 `json:"snp"`
		Microcode *uint8 `json:"microcode"`
	}
	var raw struct {
		TEE  map[string]json.RawMessage `json:"tee"`
		Seen map[string]json.RawMessage `json:"seen"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	decode := func(m map[string]json.RawMessage, name string) (tcbJSON, bool) {
		var c tcbJSON
		v, ok := m[name]
		return c, ok && json.Unmarshal(v, &c) == nil
	}
	want := map[string]uint8{"current_tcb": wantCurrent, "reported_tcb": base.SnpSpl, "committed_tcb": base.SnpSpl, "launch_tcb": base.SnpSpl}
	for where, m := range map[string]map[string]json.RawMessage{"token tee": raw.TEE, "policy input": raw.Seen} {
		for name, snpLevel := range want {
			c, ok := decode(m, name)
			if !ok || c.BL == nil || c.TEE == nil || c.SNP == nil || c.Microcode == nil {
				t.Errorf("%s %s = %+v, want bl, tee, snp and microcode", where, name, c)
				continue
			}
			if *c.SNP != snpLevel {
				t.Errorf("%s %s.snp = %d, want %d", where, name, *c.SNP, snpLevel)
			}
		}
	}
}

func tcbAppraiser(t *testing.T, dir string, g *testguest.Guest, minimum uint8) *appraise.Appraiser {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ref, err := json.Marshal(map[string]any{"version": 1, "sim-sev-snp": map[string]any{"minimum_committed_snp": minimum}})
	if err != nil {
		t.Fatal(err)
	}
	refFile, polFile := filepath.Join(dir, "reference.json"), filepath.Join(dir, "tcb.rego")
	if err := os.WriteFile(refFile, ref, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(polFile, []byte(tcbPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load(context.Background(), []string{polFile}, refFile, policy.Options{Reserved: token.Reserved})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, err := appraise.New(appraise.Config{Policies: fixedSet{set}, SimRoot: g.Signer.RootCert(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
