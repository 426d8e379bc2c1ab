// Command confidant-agent is the /init of a Confidant guest's initramfs. As
// PID 1 it mounts the kernel filesystems, reads its configuration, loads
// kernel modules, brings up the network, finds its disks and TEE, attests
// the guest, gets the disk key released, opens the OS and temp disks and
// switches to the OS, leaving the token in /run/confidant/token.jwt. On any
// failure it prints one line saying where and why, and powers the guest off.
// As PID 1 it ignores its arguments (the kernel passes it stray command line
// words).
//
// Not as PID 1 it checks a configuration, or, in the booted OS, gets fresh
// tokens for workloads from the configuration the boot left in
// /run/confidant:
//
//	confidant-agent --check-config agent.yaml [--cmdline "confidant.ip=..."]
//	confidant-agent token --audience A [--nonce N]
//	confidant-agent serve [--socket /run/confidant/agent.sock]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/flow"
	"github.com/confidant-cvm/confidant/agent/internal/tokenservice"
)

func main() {
	if os.Getpid() == 1 {
		runBoot()
	}
	os.Exit(command(os.Args[1:], os.Stdout, os.Stderr))
}

// runBoot runs the boot flow as PID 1. It never returns.
func runBoot() {
	log := slog.New(slog.NewTextHandler(console.LogWriter(os.Stderr), &slog.HandlerOptions{ReplaceAttr: console.DropTime}))
	a := flow.New(flow.Options{Console: console.New(os.Stdout, console.Uptime), Log: log})
	_ = a.Fail(a.Run(context.Background()))
	// Halting failed. PID 1 must not exit (the kernel would panic); wait.
	for {
		time.Sleep(time.Hour)
	}
}

// command runs a command line outside PID 1 and returns the exit status.
func command(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return tokenCommand(args[1:], stdout, stderr)
		case "serve":
			return serveCommand(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("confidant-agent", flag.ContinueOnError)
	checkConfig := fs.String("check-config", "", "validate this configuration file and exit (runs anywhere)")
	cmdline := fs.String("cmdline", "", "kernel command line to apply with --check-config")
	if code, ok := parse(fs, args, stdout, stderr, rootUsage); !ok {
		return code
	}
	log := slog.New(slog.NewTextHandler(console.LogWriter(stderr), &slog.HandlerOptions{ReplaceAttr: console.DropTime}))
	if *checkConfig != "" {
		return check(*checkConfig, *cmdline, stdout, stderr, log)
	}
	fmt.Fprintln(stderr, "confidant-agent: not PID 1; it runs as the initramfs /init (use --check-config FILE to validate a configuration, "+
		"or the token and serve commands in the booted OS)")
	return 2
}

// rootUsage is the help of the program; "Available Commands:" lists the
// commands as cobra programs do.
const rootUsage = `confidant-agent is the /init of a Confidant guest's initramfs. As PID 1 it
attests the guest, opens its disks and switches to the OS; otherwise:

Usage:
  confidant-agent --check-config FILE [--cmdline "confidant.ip=..."]
  confidant-agent token --audience A [--nonce N]
  confidant-agent serve [--socket PATH]

Available Commands:
  token   Print a fresh token for a workload (in the booted OS)
  serve   Serve tokens to workloads on a unix socket (in the booted OS)

Flags:`

// parse parses args. On -h or --help it prints usage and fs's flags on
// stdout and returns 0, false; on a bad flag it prints them on stderr after
// the error and returns 2, false.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, usage string) (code int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if err == nil {
		return 0, true
	}
	out, code := stderr, 2
	if errors.Is(err, flag.ErrHelp) {
		out, code = stdout, 0
	}
	fmt.Fprintln(out, usage)
	fs.SetOutput(out)
	fs.PrintDefaults()
	return code, false
}

func check(path, cmdline string, stdout, stderr io.Writer, log *slog.Logger) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "confidant-agent: %v\n", err)
		return 1
	}
	if _, err := config.Parse(data, cmdline, log); err != nil {
		fmt.Fprintf(stderr, "confidant-agent: %s:\n%v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "confidant-agent: %s is valid\n", path)
	return 0
}

// issuerFlags are the flags of the token and serve commands.
type issuerFlags struct {
	config, ca, tpm string
	verbose         bool
}

func (f *issuerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", filepath.Join(config.RunDir, config.RunConfigFile), "agent configuration (the copy the boot left)")
	fs.StringVar(&f.ca, "ca", "", "verifier CA certificates (default: "+config.RunCAFile+" beside the configuration)")
	fs.StringVar(&f.tpm, "tpm", "", "TPM device (default /dev/tpmrm0)")
	fs.BoolVar(&f.verbose, "v", false, "log details to stderr")
}

func (f *issuerFlags) open(ctx context.Context, log *slog.Logger) (*tokenservice.Issuer, error) {
	return tokenservice.Open(ctx, tokenservice.Options{ConfigPath: f.config, CAFile: f.ca, TPMPath: f.tpm, Log: log})
}

func logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// tokenCommand prints one fresh token on stdout.
func tokenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("confidant-agent token", flag.ContinueOnError)
	var f issuerFlags
	f.register(fs)
	audience := fs.String("audience", "", "the relying party the token is for (required)")
	nonce := fs.String("nonce", "", "a nonce to bind into the token as runtime.data.nonce")
	if code, ok := parse(fs, args, stdout, stderr, "Print one fresh token for a workload on stdout.\n\nUsage:\n  confidant-agent token --audience A [--nonce N] [flags]\n\nFlags:"); !ok {
		return code
	}
	req := tokenservice.Request{Audience: *audience, Nonce: *nonce}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "confidant-agent token: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := req.Check(); err != nil {
		fmt.Fprintf(stderr, "confidant-agent token: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	iss, err := f.open(ctx, logger(stderr, f.verbose))
	if err != nil {
		fmt.Fprintf(stderr, "confidant-agent token: %v\n", err)
		return 1
	}
	defer iss.Close()
	tok, err := iss.Token(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "confidant-agent token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// serveCommand serves the token API on a unix socket until SIGINT or
// SIGTERM.
func serveCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("confidant-agent serve", flag.ContinueOnError)
	var f issuerFlags
	f.register(fs)
	socket := fs.String("socket", filepath.Join(config.RunDir, config.RunSocketFile), "unix socket to serve GET /v1/token?audience=A[&nonce=N] on")
	modeStr := fs.String("socket-mode", "0600", "permissions of the socket (who may ask for tokens)")
	if code, ok := parse(fs, args, stdout, stderr, "Serve fresh tokens to workloads on a unix socket until SIGINT or SIGTERM.\n\nUsage:\n  confidant-agent serve [--socket PATH] [flags]\n\nFlags:"); !ok {
		return code
	}
	mode, err := strconv.ParseUint(*modeStr, 8, 32)
	if err != nil || mode > 0o777 || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "confidant-agent serve: want --socket-mode in octal (0600) and no arguments\n")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	iss, err := f.open(ctx, logger(stderr, f.verbose))
	if err != nil {
		fmt.Fprintf(stderr, "confidant-agent serve: %v\n", err)
		return 1
	}
	defer iss.Close()
	ln, err := tokenservice.Listen(*socket, os.FileMode(mode))
	if err != nil {
		fmt.Fprintf(stderr, "confidant-agent serve: %v\n", err)
		return 1
	}
	log.Info("serving tokens", "socket", *socket)
	srv := &tokenservice.Server{Source: iss, Log: log}
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "confidant-agent serve: %v\n", err)
		return 1
	}
	return 0
}
