// Package cli is confidant-hostd's command tree (cobra): `serve` runs the
// daemon, `vm ...` drives it over its unix socket, `sim-root` prints the
// simulated secure processor's root certificate for the verifier.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/hostd/internal/api"
	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/preflight"
	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/relay"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// Defaults.
const (
	DefaultSocket   = "/run/confidant-hostd.sock"
	DefaultStateDir = "/var/lib/confidant-hostd"
	// SimDirName is the simulated secure processor's chain under the state
	// directory.
	SimDirName = "sim-sp"
)

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.As(err, new(quietError)) {
			fmt.Fprintln(stderr, "confidant-hostd:", termsafe.Escape(err.Error()))
		}
		return 1
	}
	return 0
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	var socket string
	root := &cobra.Command{
		Use:           "confidant-hostd",
		Short:         "Define, boot, stop and watch confidential guests (SEV-SNP, TDX, or the simulated TEE)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&socket, "socket", DefaultSocket, "hostd API unix socket")
	client := func() *api.Client { return api.NewClient(socket) }
	root.AddCommand(serveCmd(&socket, stderr), vmCmd(client, stdout), simRootCmd(stdout), relayCmd())
	return root
}

// quietError is an error Main does not print: the relay's stderr is the
// guest's connection.
type quietError struct{ err error }

func (e quietError) Error() string { return e.err.Error() }
func (e quietError) Unwrap() error { return e.err }

// relayCmd is the hidden `relay --to HOST:PORT` that QEMU's user
// networking runs per guest connection to the verifier (see package
// relay). It prints nothing, ever: its stdout and stderr are the guest's
// connection.
func relayCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:    "relay --to HOST:PORT",
		Short:  "Copy one guest connection (stdin/stdout) to the verifier (run by QEMU, one per connection)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return quietError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := relay.CheckAddress(to); err != nil {
				return quietError{err}
			}
			g, err := relay.Stdio()
			if err != nil {
				return quietError{err}
			}
			if err := relay.Run(cmd.Context(), g, to, relay.Options{}); err != nil {
				return quietError{err}
			}
			return nil
		},
	}
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return quietError{err} })
	cmd.Flags().StringVar(&to, "to", "", "verifier address, host:port")
	return cmd
}

func serveCmd(socket *string, stderr io.Writer) *cobra.Command {
	var (
		stateDir, onExit, qemuBin, logLevel string
		stopTimeout                         time.Duration
		allowHostVTPM                       bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: API on --socket, state in --state-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			exit := guest.OnExit(onExit)
			if exit != guest.OnExitStop && exit != guest.OnExitLeave {
				return fmt.Errorf("--on-exit %q: want stop or leave", onExit)
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl, ReplaceAttr: termsafe.ReplaceAttr}))
			return Serve(cmd.Context(), ServeConfig{
				StateDir: stateDir, Socket: *socket, OnExit: exit, QEMU: qemuBin,
				StopTimeout: stopTimeout, AllowHostVTPM: allowHostVTPM,
			}, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", DefaultStateDir, "state directory (specs, status, disks, vTPMs, simulated chain)")
	f.StringVar(&onExit, "on-exit", string(guest.OnExitStop), "what to do with running guests when hostd exits: stop or leave")
	f.StringVar(&qemuBin, "qemu", "qemu-system-x86_64", "QEMU binary")
	f.DurationVar(&stopTimeout, "stop-timeout", 30*time.Second, "wait after system_powerdown before killing QEMU")
	f.BoolVar(&allowHostVTPM, "allow-host-vtpm", false, "DEVELOPMENT ONLY: let sev-snp/tdx guests use a host-visible swtpm")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// ServeConfig is the daemon's configuration.
type ServeConfig struct {
	StateDir, Socket, QEMU string
	OnExit                 guest.OnExit
	StopTimeout            time.Duration
	AllowHostVTPM          bool
}

// Serve runs the daemon until ctx ends, then stops or leaves the guests.
func Serve(ctx context.Context, c ServeConfig, log *slog.Logger) error {
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	signer, err := sim.LoadOrCreate(filepath.Join(c.StateDir, SimDirName))
	if err != nil {
		return fmt.Errorf("loading simulated secure processor chain: %w", err)
	}
	host := preflight.Host{
		Root:        os.DirFS("/"),
		QEMUVersion: func(ctx context.Context) (qemu.Version, error) { return qemu.BinaryVersion(ctx, c.QEMU) },
	}
	m, err := guest.New(ctx, guest.Options{
		StateDir:      c.StateDir,
		QEMU:          c.QEMU,
		Signer:        signer,
		Preflight:     func(ctx context.Context, s *spec.Spec) error { return preflight.Check(ctx, host, s) },
		StopTimeout:   c.StopTimeout,
		AllowHostVTPM: c.AllowHostVTPM,
		Log:           log.WithGroup("guests"),
	})
	if err != nil {
		return err
	}
	ln, err := api.Listen(c.Socket)
	if err != nil {
		m.Close(context.WithoutCancel(ctx), guest.OnExitLeave)
		return err
	}
	log.Info("confidant-hostd serving", "socket", c.Socket, "state_dir", c.StateDir,
		"sim_root", filepath.Join(c.StateDir, SimDirName, sim.ARKCertFile), "on_exit", c.OnExit)
	serr := api.Serve(ctx, ln, api.NewHandler(m, log.WithGroup("api")), log)
	_ = os.Remove(c.Socket)
	log.Info("confidant-hostd exiting", "on_exit", c.OnExit)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.StopTimeout+30*time.Second)
	defer cancel()
	return errors.Join(serr, m.Close(cctx, c.OnExit))
}

func simRootCmd(stdout io.Writer) *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "sim-root",
		Short: "Print the simulated secure processor's root (ARK) certificate, PEM, for the verifier's sim-root flag",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := sim.LoadOrCreate(filepath.Join(stateDir, SimDirName))
			if err != nil {
				return err
			}
			_, err = stdout.Write(s.RootPEM())
			return err
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", DefaultStateDir, "hostd state directory")
	return cmd
}

// LoadSpecFile reads a YAML spec, making its relative paths relative to
// the file's directory.
func LoadSpecFile(path string) (*spec.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading spec: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving spec path: %w", err)
	}
	return spec.ParseYAML(b, filepath.Dir(abs))
}

// esc escapes text from the daemon for the terminal (shared/termsafe): a
// guest controls parts of status reasons and errors.
func esc(s string) string { return termsafe.Escape(s) }

func teeLabel(g guest.Guest) string {
	if g.Status.Simulated || g.Spec.TEE.Simulated() {
		return esc(string(g.Spec.TEE)) + " (SIMULATED)"
	}
	return esc(string(g.Spec.TEE))
}

// orDash is s escaped, "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return esc(s)
}

// printJSON prints v as indented JSON in pure ASCII (termsafe.JSON):
// encoding/json writes C1 controls and bidi overrides raw.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

// printList prints guests as a table, every cell escaped.
func printList(w io.Writer, gs []guest.Guest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTEE\tSTATE\tMEASUREMENT\tREASON")
	for _, g := range gs {
		m := g.Status.Measurement
		if len(m) > 16 {
			m = m[:16] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", esc(g.Name), teeLabel(g), esc(string(g.Status.State)), orDash(m), esc(g.Status.Reason))
	}
	return tw.Flush()
}

// printGuest prints one guest's spec and status, every value escaped.
func printGuest(w io.Writer, g guest.Guest) error {
	st := g.Status
	fmt.Fprintf(w, "name:         %s\ntee:          %s\nstate:        %s\n", esc(g.Name), teeLabel(g), esc(string(st.State)))
	if st.Reason != "" {
		fmt.Fprintf(w, "reason:       %s\n", esc(st.Reason))
	}
	fmt.Fprintf(w, "vcpus:        %d\nmemory:       %s\nkernel:       %s\ninitrd:       %s\ncmdline:      %s\n",
		g.Spec.VCPUs, esc(fmt.Sprint(g.Spec.Memory)), esc(g.Spec.Image.Kernel), esc(g.Spec.Image.Initrd), esc(g.Spec.Image.Cmdline))
	fmt.Fprintf(w, "firmware:     %s %s\n", esc(string(g.Spec.Firmware.Kind)), esc(g.Spec.Firmware.Path))
	if g.Spec.Image.ESP != "" || st.UEFIVars != "" {
		fmt.Fprintf(w, "esp:          %s\nuefi vars:    %s\n", orDash(g.Spec.Image.ESP), orDash(st.UEFIVars))
	}
	fmt.Fprintf(w, "os disk:      %s\ntemp disk:    %s (present: %t)\nverifier:     %s\nvtpm:         %s\n",
		orDash(g.Spec.Image.OSDisk), esc(fmt.Sprint(g.Spec.TempDiskSize)), st.TempDiskPresent, esc(fmt.Sprint(g.Spec.Verifier)),
		esc(fmt.Sprint(g.Spec.VTPM)))
	_, err := fmt.Fprintf(w, "measurement:  %s\npid:          %d\nboots:        %d\n", orDash(st.Measurement), st.PID, st.Boots)
	return err
}

// sanitizer filters control bytes from a stream, keeping newlines and tabs;
// carriage returns are dropped.
type sanitizer struct{ w io.Writer }

func (s *sanitizer) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p))
	for _, b := range p {
		switch {
		case b == '\r':
		case b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7f):
			out = append(out, b)
		default:
			out = append(out, '?')
		}
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
