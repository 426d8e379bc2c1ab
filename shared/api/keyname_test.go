package api

import (
	"regexp"
	"strings"
	"testing"
)

// keyNameRE is the pattern the verifier, the image tool and the agent each
// used to write: the reference ValidKeyName is compared against.
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkKeyName(t *testing.T, s string) {
	t.Helper()
	if got, want := ValidKeyName(s), keyNameRE.MatchString(s); got != want {
		t.Errorf("ValidKeyName(%q) = %v, the pattern says %v", s, got, want)
	}
}

func TestValidKeyName(t *testing.T) {
	for _, s := range []string{
		"", "a", "os-disk", "-os", ".os", "_os", "os.disk_2-x", "os disk", "os/disk", "é", "a\n", "\na",
		strings.Repeat("k", 127), strings.Repeat("k", 128), strings.Repeat("k", 129),
	} {
		checkKeyName(t, s)
	}
	for c := range 256 {
		checkKeyName(t, string([]byte{byte(c)}))
		checkKeyName(t, "a"+string([]byte{byte(c)}))
		checkKeyName(t, string([]byte{byte(c)})+"a")
	}
	if !ValidKeyName("os-disk") || ValidKeyName("../x") {
		t.Fatal("ValidKeyName: os-disk must pass and ../x must not")
	}
}

func FuzzValidKeyName(f *testing.F) {
	f.Add("os-disk")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, s string) { checkKeyName(t, s) })
}

func TestReleasePath(t *testing.T) {
	if got, want := ReleasePath("os-disk"), "/v1/keys/os-disk/release"; got != want {
		t.Errorf("ReleasePath = %q, want %q", got, want)
	}
	if got, want := ReleasePath("a b"), "/v1/keys/a%20b/release"; got != want {
		t.Errorf("ReleasePath = %q, want %q", got, want)
	}
}
