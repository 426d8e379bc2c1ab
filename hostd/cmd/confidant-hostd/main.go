// Command confidant-hostd defines, boots, stops and watches confidential
// guests on a virtualization host. See hostd/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/confidant-cvm/confidant/hostd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
