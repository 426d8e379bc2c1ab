// Package testenv decides how tests treat a machine that lacks
// what a test needs. A test that needs root skips when not root, with a
// message naming why, unless CONFIDANT_TEST_REQUIRE_ROOT=1 (set by `make
// test`: CI runs as root, so a skip there would hide a test that never
// ran); then it fails.
package testenv

import (
	"os"
	"syscall"
	"testing"
)

// RequireRootEnv names the variable that turns the root skips into
// failures.
const RequireRootEnv = "CONFIDANT_TEST_REQUIRE_ROOT"

// verdict is what a root-only test does.
type verdict int

const (
	run verdict = iota
	skip
	fail
)

// decide returns what a test that needs root does, run with effective
// user id euid and RequireRootEnv set to env.
func decide(euid int, env string) verdict {
	switch {
	case euid == 0:
		return run
	case env == "1":
		return fail
	}
	return skip
}

// RequireRoot returns when the test runs as root; otherwise it skips t, or
// fails it when CONFIDANT_TEST_REQUIRE_ROOT=1. why says what needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	switch decide(os.Geteuid(), os.Getenv(RequireRootEnv)) {
	case fail:
		t.Fatalf("%s needs root, and %s=1 requires root-only tests to run (euid %d)", why, RequireRootEnv, os.Geteuid())
	case skip:
		t.Skipf("%s needs root (euid %d); skipped. Set %s=1 to fail instead, as make test does", why, os.Geteuid(), RequireRootEnv)
	}
}

// Tmpfs mounts a tmpfs of size (mount's size=, e.g. "16m") on a new
// directory for the test and unmounts it when the test ends: a disk that
// really fills up, and that can be remounted read-only. It needs root
// (see RequireRoot).
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	RequireRoot(t, "mounting a tmpfs")
	dir, err := os.MkdirTemp("", "tmpfs")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		os.Remove(dir)
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}
