package vtpm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
)

// TestExplainLockout: a TPM_RC_LOCKOUT answer, however deeply wrapped,
// becomes ErrLockout, whose text names the condition and the remedy and
// keeps the TPM's own words; other errors pass unchanged.
func TestExplainLockout(t *testing.T) {
	lockout := tpm2.Warning{Code: tpm2.RCLockout}
	tests := map[string]struct {
		err         error
		wantLockout bool
	}{
		"lockout":               {lockout, true},
		"lockout wrapped":       {fmt.Errorf("attesting: %w", lockout), true},
		"lockout wrapped twice": {fmt.Errorf("evidence: %w", fmt.Errorf("attesting: %w", lockout)), true},
		"lockout joined":        {errors.Join(errors.New("closing"), lockout), true},
		"already explained":     {fmt.Errorf("%w: %w", ErrLockout, lockout), true},
		"retry warning":         {tpm2.Warning{Code: tpm2.RCRetry}, false},
		"auth failure":          {tpm2.SessionError{Code: tpm2.RCAuthFail, Session: tpm2.RCIndex(1)}, false},
		"format-zero error":     {tpm2.Error{Code: tpm2.RCInitialize}, false},
		"plain error":           {errors.New("TPM is in DA lockout mode"), false},
		"nil":                   {nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := explain(tc.err)
			if IsLockout(tc.err) != tc.wantLockout {
				t.Errorf("IsLockout = %v, want %v", !tc.wantLockout, tc.wantLockout)
			}
			if !tc.wantLockout {
				if got != tc.err {
					t.Errorf("explain(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !errors.Is(got, ErrLockout) {
				t.Fatalf("explain(%v) = %v, want ErrLockout", tc.err, got)
			}
			msg := got.Error()
			for _, want := range []string{"vTPM is in dictionary-attack lockout (", "TPM_RC_LOCKOUT", "); remedy: ", "noDA", "DA lockout mode"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if strings.Count(msg, "remedy:") != 1 {
				t.Errorf("message %q names the remedy %d times", msg, strings.Count(msg, "remedy:"))
			}
			if !IsLockout(got) {
				t.Error("the explained error no longer wraps the TPM's answer")
			}
		})
	}
}
