package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodeThroughWrapping(t *testing.T) {
	err := fmt.Errorf("verify: %w", Code(3))
	var c Code
	if !errors.As(err, &c) || c != 3 || c.ExitCode() != 3 {
		t.Fatalf("errors.As(%v) = %d", err, c)
	}
	var status interface{ ExitCode() int }
	if !errors.As(err, &status) || status.ExitCode() != 3 {
		t.Fatalf("errors.As(%v) to ExitCode() int failed", err)
	}
	if got := Code(1).Error(); got != "exit status 1" {
		t.Errorf("Error() = %q", got)
	}
}
