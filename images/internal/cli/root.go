// Package cli holds the confidant-image command tree: one cobra command per
// subcommand, each a thin layer over a library package that does the work.
package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// Env is what the commands take from the process: output streams and the
// environment (SOURCE_DATE_EPOCH).
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; nil reads none.
	Getenv func(string) string
}

func (e Env) getenv(key string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(key)
}

// NewRoot returns the confidant-image root command with every subcommand.
func NewRoot(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "confidant-image",
		Short: "Build the boot artifacts of a Confidant confidential VM",
		Long: `confidant-image prepares what a Confidant guest boots from, on an image
builder's machine or in CI. Every output is reproducible: the same inputs give
the same bytes, so reference values can be computed from them.`,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.AddCommand(newInitramfsCmd(env))
	return root
}
