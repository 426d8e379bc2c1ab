// Package cli is confidant-verifier's command tree (cobra): `serve` runs
// the verifier (package server), `admin ...` drives its admin API (package
// admincli), `appraise` and `inspect` give security teams the same
// appraisal offline (package offline), and `keys` manages the token
// signing keys in the store.
package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/admincli"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

// Main runs the command line and returns the process exit code: 0, the
// status a command chose (1 for a failed appraisal or inspection), or 2
// with the error on stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return exitcode.Of("confidant-verifier", root.ExecuteContext(ctx), stderr)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "confidant-verifier",
		Short:         "Attestation verifier for Confidant confidential VMs",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	var logLevel, logFormat string
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	logger := func() (*slog.Logger, error) {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: termsafe.ReplaceAttr}
		switch logFormat {
		case "text":
			return slog.New(slog.NewTextHandler(stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(stderr, opts)), nil
		}
		return nil, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	root.AddCommand(serveCmd(logger), appraiseCmd(stdout), inspectCmd(stdout), keysCmd(stdout, logger),
		admincli.Command(stdout, stderr))
	return root
}

func parseNow(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--now: %w", err)
	}
	return t, nil
}

func readCert(path string) (*x509.Certificate, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return server.ParseCertificate(b)
}

// writeJSON prints v as indented JSON in pure ASCII (termsafe.JSON): the
// reasons come from evidence, and encoding/json writes C1 controls and bidi
// overrides raw.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}
