// Command confidant-demo is what make demo runs (through scripts/demo.sh):
// the whole Confidant flow on this machine, narrated. See package
// integration/internal/demo.
//
//	go run ./integration/cmd/confidant-demo [--bin bin] [--keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/demo"
	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

func main() {
	bin := flag.String("bin", "", "directory with confidant-verifier, confidant-hostd, confidant-image and confidant-agent (default: build them)")
	keep := flag.Bool("keep", false, "keep the temporary directory (images, logs, hostd and verifier state)")
	timeout := flag.Duration("guest-timeout", 3*time.Minute, "how long each guest may run before it is killed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := harness.RepoRoot(".")
	if err != nil {
		fmt.Fprintf(os.Stderr, "confidant-demo: %v\n", err)
		os.Exit(2)
	}
	if *bin != "" {
		if *bin, err = filepath.Abs(*bin); err != nil {
			fmt.Fprintf(os.Stderr, "confidant-demo: %v\n", err)
			os.Exit(2)
		}
	}
	err = demo.Run(ctx, demo.Options{Repo: repo, Bin: *bin, Keep: *keep, Out: os.Stdout, GuestTimeout: *timeout})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "\nconfidant-demo: interrupted; everything it started was stopped and removed")
		os.Exit(130)
	default:
		fmt.Fprintf(os.Stderr, "\nconfidant-demo: %v\n", err)
		os.Exit(1)
	}
}
