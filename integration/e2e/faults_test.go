package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

// slowRule makes a policy spend a few hundred milliseconds of CPU on every
// evaluation without changing its decision, so that a request is certainly
// in the middle of its appraisal (or release) while the test kills the
// verifier. The verifier runs with a --policy-timeout far above it.
const slowRule = `
# Added by the end-to-end test: burn CPU, decide nothing.
slow_count := count([y | some y in numbers.range(1, 30000); y % 7 == 0])

deny contains "unreachable" if slow_count < 0
`

// slowPolicy writes the shipped policy at shipped with slowRule added.
func slowPolicy(t *testing.T, w *harness.World, shipped, name string) string {
	t.Helper()
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(w.Dir, name)
	if err := os.WriteFile(p, append(b, slowRule...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// killedScenario: the verifier is killed with SIGKILL while it appraises
// the guest's evidence, started again, and killed again while it decides
// the guest's key release. The agent's retries carry the boot through;
// the audit log's chain stays whole and holds no record of the requests
// the kills cut short.
func killedScenario() scenario {
	return scenario{
		verifierArgs: []string{"--policy-timeout", "10s"},
		appraisal: func(t *testing.T, w *harness.World) string {
			return slowPolicy(t, w, w.Lab.ShippedDevelopmentPolicy(), "appraisal-slow.rego")
		},
		releasePolicy: func(t *testing.T, w *harness.World) string {
			return slowPolicy(t, w, w.Lab.ShippedReleasePolicy("sim_development"), "release-slow.rego")
		},
		during: killMidRequests,
		check: func(t *testing.T, r *run) {
			checkBooted(t, r)
			ok, report, err := r.world.Verifier.VerifyAudit(context.Background())
			if err != nil || !ok {
				t.Errorf("audit chain after two SIGKILLs: ok=%v %v\n%s", ok, err, report)
			}
			if _, ok := r.res.Boot.FindAgent("attempt 1 failed"); !ok {
				t.Errorf("no failed first attempt on the console, so no request was cut short:\n%s", r.res.Boot.AgentText())
			}
		},
	}
}

// killMidRequests kills the verifier the first time a request is in flight
// (admitted, its CPU work not done: the evidence is being appraised), starts
// it again, waits for a token to be issued, then kills it the next time a
// request is in flight (the key release's policy), and starts it again.
func killMidRequests(ctx context.Context, t *testing.T, w *harness.World, _ string) error {
	v := w.Verifier
	for i, phase := range []string{"appraisal", "release"} {
		if i == 1 {
			if err := waitMetric(ctx, v, "confidant_verifier_tokens_issued_total", 1); err != nil {
				return fmt.Errorf("waiting for the token after the restart: %w", err)
			}
		}
		if err := waitMetric(ctx, v, "confidant_verifier_admission_in_flight", 1); err != nil {
			return fmt.Errorf("waiting for the %s to be in flight: %w", phase, err)
		}
		if err := v.Kill(); err != nil {
			return err
		}
		t.Logf("%s: verifier killed (SIGKILL) mid-%s", w.Name, phase)
		if err := w.StartVerifier(ctx); err != nil {
			return fmt.Errorf("restarting after the kill mid-%s: %w", phase, err)
		}
	}
	return nil
}

// waitMetric polls the verifier's metric until it is at least want.
func waitMetric(ctx context.Context, v *harness.Verifier, name string, want float64) error {
	var last error
	for ctx.Err() == nil {
		got, err := v.Metric(ctx, name)
		if err == nil && got >= want {
			return nil
		}
		if err != nil && !errors.Is(err, harness.ErrNoMetric) {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never reached %v: %w (last error: %v)", name, want, ctx.Err(), last)
}
