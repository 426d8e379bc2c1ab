// Package admincli is `confidant-verifier admin`: the command line of the
// verifier's admin API (package admin), over the admin unix socket or TCP
// with mutual TLS.
//
// Key material is never printed: a generated key is written only to the
// file --return-key-file names (mode 0600, through a temporary file linked
// into place, never replacing an existing file), and an imported key is
// read from a file only its owner can read.
package admincli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

type globals struct {
	stdout, stderr io.Writer
	socket         string
	stateDir       string
	url            string
	tlsCert        string
	tlsKey         string
	tlsCA          string
	json           bool
	timeout        time.Duration
}

func (g *globals) client() (*adminclient.Client, error) {
	cfg := adminclient.ClientConfig{Timeout: g.timeout}
	if g.url != "" {
		if g.tlsCert == "" || g.tlsKey == "" || g.tlsCA == "" {
			return nil, errors.New("--url needs --tls-cert, --tls-key and --tls-ca (the admin API over TCP uses mutual TLS)")
		}
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		caPEM, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("reading --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", g.tlsCA)
		}
		cfg.URL = g.url
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	} else {
		cfg.Socket = g.socket
		if cfg.Socket == "" {
			cfg.Socket = filepath.Join(g.stateDir, server.DefaultAdminSocket)
		}
	}
	return adminclient.NewClient(cfg)
}

// printJSON prints v as indented JSON in pure ASCII (termsafe.JSON):
// encoding/json escapes control characters but writes C1 controls and
// bidi overrides raw.
func (g *globals) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(append(termsafe.JSON(b), '\n'))
	return err
}

// esc escapes text from the verifier (names, digests, reasons) for the
// terminal: the admin API is the verifier's, but what it answers can
// carry what a client sent it.
func esc(s string) string { return termsafe.Escape(s) }

// escapeErrors makes every command's error print escaped (an error answer
// quotes what the verifier was sent); errors.As still finds an
// exitcode.Code (the status a command ends with after its output, for
// example 1 for a broken audit chain).
func escapeErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error { return termsafe.Error(run(cmd, args)) }
	}
	for _, c := range cmd.Commands() {
		escapeErrors(c)
	}
}

// Command returns the `admin` command tree.
func Command(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a running verifier: keys, policies, reference values, audit log",
		Long: `Administer a running verifier through its admin API: release keys (create,
import, rotate, delete, list, show, release policy), appraisal policies and
reference values (stored and used at once by every replica), and the audit log
(list, export, verify its hash chain).

The admin API listens on <state-dir>/admin.sock (mode 0600) unless the server
was started with --admin-listen; over TCP it needs mutual TLS (--url with
--tls-cert, --tls-key and --tls-ca). Key material is never printed.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.socket, "socket", "", "admin socket (default: <state-dir>/admin.sock)")
	pf.StringVar(&g.stateDir, "state-dir", server.DefaultStateDir, "the verifier's state directory")
	pf.StringVar(&g.url, "url", "", "admin API over TCP: https://HOST:PORT (mutual TLS)")
	pf.StringVar(&g.tlsCert, "tls-cert", "", "client certificate (PEM) for --url")
	pf.StringVar(&g.tlsKey, "tls-key", "", "client key (PEM) for --url")
	pf.StringVar(&g.tlsCA, "tls-ca", "", "CA of the admin server's certificate (PEM) for --url")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of text")
	pf.DurationVar(&g.timeout, "timeout", adminclient.DefaultTimeout, "per-request timeout")
	cmd.AddCommand(keyCmd(g), policyCmd(g), referenceCmd(g), auditCmd(g))
	escapeErrors(cmd)
	return cmd
}

func readPolicy(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the release policy: %w", err)
	}
	return string(b), nil
}

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Load appraisal policies"}
	var kind, file string
	load := &cobra.Command{
		Use:   "load --kind KIND --file FILE",
		Short: "Make FILE the appraisal policy of a TEE kind (stored; every replica uses it)",
		Long: `Make FILE the appraisal policy of a TEE kind (sev-snp, tdx or sim-sev-snp). The
policy must compile and declare the kind; it is stored, used at once by this
verifier and by the other replicas sharing the store at their next poll
(30 s), and it stays in force over the --policy files across restarts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.LoadPolicy(cmd.Context(), kind, src)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "policy %s (sha256 %s) now appraises %s\nkinds with a policy: %s\n",
				esc(resp.ID), esc(resp.SHA256), esc(resp.Kind), esc(strings.Join(resp.Kinds, ", ")))
			return nil
		},
	}
	load.Flags().StringVar(&kind, "kind", "", "TEE kind: sev-snp, tdx or sim-sev-snp (required)")
	load.Flags().StringVar(&file, "file", "", "policy file (Rego v1) (required)")
	_ = load.MarkFlagRequired("kind")
	_ = load.MarkFlagRequired("file")
	cmd.AddCommand(load)
	return cmd
}

func referenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "reference", Short: "Load reference values"}
	var file string
	load := &cobra.Command{
		Use:   "load --file FILE",
		Short: "Make FILE the reference values (stored; every replica uses them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			content, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.LoadReferenceValues(cmd.Context(), content)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "reference values loaded (sha256 %s)\n", esc(resp.SHA256))
			return nil
		},
	}
	load.Flags().StringVar(&file, "file", "", "reference values file (JSON, \"version\": 1) (required)")
	_ = load.MarkFlagRequired("file")
	cmd.AddCommand(load)
	return cmd
}

// Run is a helper for tests and embedding: it runs the admin command with
// args.
func Run(ctx context.Context, stdout, stderr io.Writer, args ...string) error {
	cmd := Command(stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	return cmd.ExecuteContext(ctx)
}
