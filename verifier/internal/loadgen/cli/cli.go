// Package cli is confidant-loadgen's command tree (cobra): `init` writes
// the simulated TEE and the files a verifier needs to appraise its
// agents, `run` drives a running confidant-verifier with many simulated
// agents (package loadgen) and reports.
//
//	confidant-loadgen init --dir D
//	confidant-verifier serve --sim-root D/sim-root.pem --policy D/policy.rego \
//	  --reference-values D/reference.json ...
//	confidant-loadgen run --dir D --verifier http://127.0.0.1:8443 --concurrency 32 --duration 30s
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/loadgen"
)

// Main runs the command line and returns the process exit code: 0, the
// status a command chose, or 2 with the error on stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return exitcode.Of("confidant-loadgen", root.ExecuteContext(ctx), stderr)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "confidant-loadgen",
		Short:         "Load generator for confidant-verifier: many simulated agents attesting at once",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	var logLevel string
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	logger := func() (*slog.Logger, error) {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl, ReplaceAttr: termsafe.ReplaceAttr})), nil
	}
	root.AddCommand(initCmd(stdout), runCmd(stdout, logger))
	return root
}

func initCmd(stdout io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a simulated signer, and the root, policy and reference values a verifier needs to accept the generator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadgen.Init(dir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, `wrote %s, %s, %s and the signer in %s
start the verifier with:
  confidant-verifier serve --sim-root %s --policy %s --reference-values %s
`, loadgen.RootFile, loadgen.PolicyFile, loadgen.ReferenceFile, s.Path(loadgen.SignerDir),
				s.Path(loadgen.RootFile), s.Path(loadgen.PolicyFile), s.Path(loadgen.ReferenceFile))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write into (created if missing)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func runCmd(stdout io.Writer, logger func() (*slog.Logger, error)) *cobra.Command {
	var (
		o           loadgen.Options
		jsonOut     bool
		adminSocket string
	)
	cmd := &cobra.Command{
		Use:   "run --dir DIR --verifier URL --concurrency N (--requests M | --duration D)",
		Short: "Run simulated agents against a verifier and report throughput, latency, errors and the verifier's RSS",
		Long: `Run starts N simulated agents (each with its own AK, runtime key and identity)
that repeat challenge → attest (→ release) until M flows were started or D
passed. It prints throughput, p50/p90/p99/max latency per step and per flow,
failed flows by error code and the verifier's RSS (sampled from /proc, for a
verifier on this machine). Exit status 1 means some flow failed; 2 a usage
or setup error.

By default the load is a closed loop: every agent starts its next flow as
soon as one ends, so N agents keep N flows in flight and latency grows with
N (N ÷ throughput at saturation). With --rate R the load is open: flows are
due R per second in all, each is taken by the next free agent, and a flow's
latency counts from its due time (a wait for a free agent included) — the
latency agents see when R below the verifier's capacity is offered.

The verifier's defaults have no rate limit, so they measure its capacity; a
verifier started with --rate-limit limits each client IP, and all the agents
come from one: its refusals show up as rate_limited errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			if adminSocket != "" {
				admin, err := newAdmin(adminSocket)
				if err != nil {
					return err
				}
				o.Admin = admin
			}
			rep, err := loadgen.Execute(cmd.Context(), o, log)
			if rep != nil {
				write := loadgen.WriteText
				if jsonOut {
					write = loadgen.WriteJSON
				}
				werr := write(stdout, rep)
				if werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return err
			}
			if rep.Failures > 0 || rep.Successes == 0 {
				return exitcode.Code(1)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "dir", "", "directory written by init")
	fs.StringVar(&o.Verifier, "verifier", "http://127.0.0.1:8443", "verifier base URL")
	fs.StringVar(&o.CACert, "ca-cert", "", "PEM roots for an HTTPS verifier (default: system roots)")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "number of simulated agents running at once")
	fs.IntVar(&o.Requests, "requests", 0, "number of flows in all")
	fs.DurationVar(&o.Duration, "duration", 0, "run for this long (instead of --requests)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: start this many flows per second in all, each taken by a free agent; latency counts from the flow's due time (default: closed loop, each agent starts its next flow at once)")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "limit of one request")
	fs.StringVar(&o.Audience, "audience", "", "token audience to ask for (default: the verifier's, which key release requires)")
	fs.StringVar(&o.TEE, "tee", "sim-sev-snp", "envelope TEE kind: sim-sev-snp, or sev-snp (same simulated reports; a verifier must deny them)")
	fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&o.SaveToken, "save-token", "", "write the first issued token to this file")
	fs.StringVar(&adminSocket, "admin-socket", "", "verifier admin socket: create a key with a permissive release policy and add the release step")
	fs.StringVar(&o.ReleaseKey, "release-key", "", "release this existing key in each flow (with --admin-socket: the name of the key to create)")
	fs.IntVar(&o.VerifierPID, "verifier-pid", 0, "verifier process to sample RSS of (default: found by the URL's port)")
	fs.DurationVar(&o.RSSEvery, "rss-interval", 250*time.Millisecond, "RSS sampling interval")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
