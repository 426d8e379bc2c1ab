package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorEscaped: an error that quotes hostile text (here a file name
// with an OSC sequence) is printed escaped, with no control byte.
func TestErrorEscaped(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "\x1b]0;pwned\x07\nError: forged")
	_, stderr, err := runStreams(t, "measure", "--sim", "--vcpus", "1", "--manifest", manifest)
	if err == nil {
		t.Fatal("measure of a missing manifest succeeded")
	}
	for i := 0; i < len(stderr); i++ {
		if c := stderr[i]; (c < 0x20 || c > 0x7e) && c != '\n' {
			t.Fatalf("stderr holds the raw byte %#x at %d: %q", c, i, stderr)
		}
	}
	if !strings.Contains(stderr, `\x1b]0;pwned\x07\nError: forged`) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("stderr: %q", stderr)
	}
}
