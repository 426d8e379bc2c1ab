package exitcode

import (
	"errors"
	"fmt"
	"strings"
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

func TestOf(t *testing.T) {
	var stderr strings.Builder
	if got := Of("prog", nil, &stderr); got != 0 || stderr.Len() != 0 {
		t.Errorf("Of(nil) = %d, stderr %q", got, stderr.String())
	}
	if got := Of("prog", fmt.Errorf("appraise: %w", Code(1)), &stderr); got != 1 || stderr.Len() != 0 {
		t.Errorf("Of(Code(1)) = %d, stderr %q", got, stderr.String())
	}
	if got := Of("prog", errors.New("bad\x1b[2Jinput"), &stderr); got != 2 || stderr.String() != "prog: bad\\x1b[2Jinput\n" {
		t.Errorf("Of(error) = %d, stderr %q", got, stderr.String())
	}
}
