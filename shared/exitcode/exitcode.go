// Package exitcode is how a command ends the program with a chosen status
// and no further message: it returns a Code as its error, and the
// program's Main exits with it (errors.As finds it through wrapping).
package exitcode

import "fmt"

// Code is an exit status returned as an error.
type Code int

func (c Code) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// ExitCode returns the status.
func (c Code) ExitCode() int { return int(c) }
