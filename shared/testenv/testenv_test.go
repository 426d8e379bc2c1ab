package testenv

import (
	"os"
	"testing"
)

func TestDecide(t *testing.T) {
	tests := map[string]struct {
		euid int
		env  string
		want verdict
	}{
		"root":                         {0, "", run},
		"root, required":               {0, "1", run},
		"not root":                     {1000, "", skip},
		"not root, required":           {1000, "1", fail},
		"not root, other value":        {1000, "0", skip},
		"not root, required with junk": {1000, "yes", skip},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decide(tc.euid, tc.env); got != tc.want {
				t.Errorf("decide(%d, %q) = %v, want %v", tc.euid, tc.env, got, tc.want)
			}
		})
	}
}

// TestRequireRoot: as root it returns and the test goes on; otherwise the
// test stops here, skipped or (with the variable set) failed.
func TestRequireRoot(t *testing.T) {
	reached := false
	ok := t.Run("inner", func(t *testing.T) {
		RequireRoot(t, "this test")
		reached = true
	})
	switch decide(os.Geteuid(), os.Getenv(RequireRootEnv)) {
	case run:
		if !ok || !reached {
			t.Error("RequireRoot stopped a test running as root")
		}
	case skip:
		if !ok || reached {
			t.Errorf("not root: RequireRoot did not skip (passed %v, went on %v)", ok, reached)
		}
	case fail:
		// The inner test failed, which fails this one too: that is the
		// point of the variable.
		if reached {
			t.Error("RequireRoot let a required root test go on without root")
		}
	}
}
