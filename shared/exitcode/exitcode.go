// Package exitcode is how a command ends the program with a chosen status
// and no further message: it returns a Code as its error, and the
// program's Main exits with it (errors.As finds it through wrapping).
package exitcode

import (
	"errors"
	"fmt"
	"io"

	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// Code is an exit status returned as an error.
type Code int

func (c Code) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// ExitCode returns the status.
func (c Code) ExitCode() int { return int(c) }

// Of returns the process exit status for what a program's command tree
// returned: 0 for nil, the status an error carries (a Code, or anything
// with ExitCode() int, through wrapping), otherwise 2 after printing
// "prog: error" on stderr, escaped.
func Of(prog string, err error, stderr io.Writer) int {
	var status interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.As(err, &status):
		return status.ExitCode()
	}
	fmt.Fprintln(stderr, prog+":", termsafe.Escape(err.Error()))
	return 2
}
