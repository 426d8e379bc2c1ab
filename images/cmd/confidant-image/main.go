// Command confidant-image prepares what a Confidant guest boots from: the
// initramfs with the agent, the encrypted OS disk, the launch measurements
// and reference values, and the manifest confidant-hostd boots from. Run
// "confidant-image --help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/confidant-cvm/confidant/images/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := cli.NewRoot(cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if err := root.ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}
