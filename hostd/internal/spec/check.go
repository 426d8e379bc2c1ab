package spec

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// SplitVerifier checks and splits a verifier address "host:port". host is
// an IP address or a DNS name; port 1..65535.
func SplitVerifier(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		// net's error repeats addr unquoted (a newline in it would
		// reach the API answer raw): keep only its reason.
		reason := err.Error()
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			reason = ae.Err
		}
		return "", 0, fmt.Errorf("address %q: %s", addr, reason)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return "", 0, fmt.Errorf("address %q: bad port", addr)
	}
	if net.ParseIP(h) == nil && !dnsNameRE.MatchString(h) {
		return "", 0, fmt.Errorf("address %q: host is neither an IP address nor a DNS name", addr)
	}
	if strings.Contains(h, ":") {
		// QEMU's guestfwd syntax cannot carry an IPv6 literal.
		return "", 0, fmt.Errorf("address %q: IPv6 literals are not supported by QEMU guestfwd", addr)
	}
	return h, n, nil
}

var dnsNameRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

var cpuRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validCPU(s string) bool { return cpuRE.MatchString(s) }

// checkPath accepts absolute, clean paths without characters that QEMU or
// swtpm option syntax would misread.
func checkPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("path %q is not clean", p)
	}
	if len(p) > 4096 || strings.ContainsAny(p, ",=\n\r\t\x00") || !printable(p) {
		return fmt.Errorf("path %q: contains characters hostd refuses (',', '=', control characters)", p)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}
