// Package cli holds the confidant-image command tree: one cobra command per
// subcommand, each a thin layer over a library package that does the work.
package cli

import (
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/termsafe"
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

// globalFlags are the flags every subcommand has.
type globalFlags struct {
	verbose bool
}

// logger returns the logger of a command: warnings and errors on stderr,
// and what is being done with --verbose. Keys are never logged.
func (g *globalFlags) logger(env Env) *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: termsafe.ReplaceAttr}))
}

// NewRoot returns the confidant-image root command with every subcommand.
func NewRoot(env Env) *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:   "confidant-image",
		Short: "Build the boot artifacts of a Confidant confidential VM",
		Long: `confidant-image prepares what a Confidant guest boots from, on an image
builder's machine or in CI:

  build      everything at once: initramfs, encrypted OS disk, reference
             values and manifest.json in one output directory
  initramfs  the initramfs with confidant-agent as /init
  encrypt    a raw ext4 root filesystem into a LUKS2 OS disk, offline
  measure    the SEV-SNP (or simulated) launch measurement of a boot

The initramfs and the measurements are reproducible: the same inputs give
the same bytes and digests, so reference values can be recomputed by anyone.`,
		Version:       toolVersion(),
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log what is being done on stderr")
	root.AddCommand(newBuildCmd(env, &g), newInitramfsCmd(env), newEncryptCmd(env, &g), newMeasureCmd(env))
	escapeErrors(root)
	return root
}

// escapeErrors makes every command's error print escaped (shared/termsafe):
// an error can quote what the verifier answered, or a file's contents.
// errors.Is and errors.As still see the error.
func escapeErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error { return termsafe.Error(run(cmd, args)) }
	}
	for _, c := range cmd.Commands() {
		escapeErrors(c)
	}
}

// toolVersion is the module version the binary was built from, with the VCS
// revision when the build recorded one.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" && v == "(devel)" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + dirty
	}
	return v
}
