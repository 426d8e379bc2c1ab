package config

import (
	"regexp"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/api"
)

// The patterns the hand-written name checks replace: the reference they are
// compared against.
var (
	keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	ifaceRE   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)
	portRE    = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

// checkNames compares every name check with its pattern on s.
func checkNames(t *testing.T, s string) {
	t.Helper()
	for _, c := range []struct {
		name string
		got  bool
		re   *regexp.Regexp
	}{
		{"api.ValidKeyName", api.ValidKeyName(s), keyNameRE},
		{"validUUID", validUUID(s), uuidRE},
		{"validPortName(15)", validPortName(s, 15), ifaceRE},
		{"validPortName(64)", validPortName(s, 64), portRE},
	} {
		if want := c.re.MatchString(s); c.got != want {
			t.Errorf("%s(%q) = %v, the pattern %s says %v", c.name, s, c.got, c.re, want)
		}
	}
}

func TestNameChecks(t *testing.T) {
	for _, s := range []string{
		"", "a", "os-disk", "-os", ".os", "_os", "os.disk_2-x", "os disk", "os/disk", "é",
		strings.Repeat("k", 128), strings.Repeat("k", 129), strings.Repeat("k", 15), strings.Repeat("k", 16),
		strings.Repeat("p", 64), strings.Repeat("p", 65), "eth0", "enp0s3:1", "confidant.sp", "a\n", "\na",
		"3f1c2b6a-1111-4222-8333-444455556666", "3F1C2B6A-1111-4222-8333-444455556666",
		"3f1c2b6a-1111-4222-8333-44445555666", "3f1c2b6a-1111-4222-8333-4444555566666",
		"3f1c2b6a11111-4222-8333-444455556666", "3f1c2b6g-1111-4222-8333-444455556666",
		"3f1c2b6a-1111-4222-8333-444455556666\n", "{3f1c2b6a-1111-4222-8333-44445555666}",
	} {
		checkNames(t, s)
	}
	// Every byte in every position of short names and of a UUID.
	uuid := []byte("3f1c2b6a-1111-4222-8333-444455556666")
	for c := range 256 {
		checkNames(t, string([]byte{byte(c)}))
		checkNames(t, "a"+string([]byte{byte(c)}))
		checkNames(t, string([]byte{byte(c)})+"a")
		for _, i := range []int{0, 7, 8, 9, 13, 35} {
			u := append([]byte(nil), uuid...)
			u[i] = byte(c)
			checkNames(t, string(u))
		}
	}
}

func FuzzNameChecks(f *testing.F) {
	f.Add("os-disk")
	f.Add("3f1c2b6a-1111-4222-8333-444455556666")
	f.Add("eth0")
	f.Fuzz(func(t *testing.T, s string) { checkNames(t, s) })
}
