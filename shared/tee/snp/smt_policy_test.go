package snp_test

import (
	"errors"
	"testing"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// TestGuestPolicySMTRefused reaches the guest-policy SMT branch alone: the
// guest policy allows SMT while the platform runs without it, so only the
// policy bit can refuse the report. (With SMT on the platform too, the
// platform-info branch refuses it even when the policy branch is gone; the
// mutation check found that no test told the two apart.)
func TestGuestPolicySMTRefused(t *testing.T) {
	s := testSigner(t)
	good, table, err := s.Sign(sim.Request{})
	if err != nil {
		t.Fatal(err)
	}
	smtOff := resignFrom(t, s, good, func(r []byte) { r[offPlatform] &^= 1 })
	c, err := snp.Verify(smtOff, table, snp.Options{SimRoot: s.RootCert(), AllowSMT: true})
	if err != nil {
		t.Fatalf("with SMT allowed: %v", err)
	}
	if !c.Policy.SMT || c.PlatformInfo.SMTEnabled {
		t.Fatalf("fixture: guest policy SMT %v, platform SMT %v; want true, false", c.Policy.SMT, c.PlatformInfo.SMTEnabled)
	}
	if _, err := snp.Verify(smtOff, table, snp.Options{SimRoot: s.RootCert()}); !errors.Is(err, snp.ErrSMT) {
		t.Fatalf("guest policy allowing SMT: %v, want %v", err, snp.ErrSMT)
	}
}
