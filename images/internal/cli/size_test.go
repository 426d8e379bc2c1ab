package cli

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512M": 512 << 20, "512MiB": 512 << 20, "2G": 2 << 30, "2g": 2 << 30, "1T": 1 << 40,
		"1048576": 1 << 20, "2048K": 2 << 20, "16MB": 16 << 20,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "0M", "-1M", "1.5G", "12345", "1K", "9999999999T", "1X", "1 M", "0x10M"} {
		if got, err := parseSize(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("parseSize(%q) = %d, %v; want ErrUsage", bad, got, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "2GiB", "1048576", "", "-1", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && (n <= 0 || n%(1<<20) != 0) {
			t.Errorf("parseSize(%q) = %d", s, n)
		}
	})
}

func TestModulesDirOf(t *testing.T) {
	k := cloudKernel(t)
	if dir, err := modulesDirOf(k); err != nil || dir != "/lib/modules/"+strings.TrimPrefix(filepath.Base(k), "vmlinuz-") {
		t.Errorf("modulesDirOf(%s) = %q, %v", k, dir, err)
	}
	for _, bad := range []string{"/boot/bzImage", "/boot/vmlinuz-", "/boot/vmlinuz-0.0.0-none"} {
		if _, err := modulesDirOf(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("modulesDirOf(%s): %v, want ErrUsage", bad, err)
		}
	}
}
