// Command confidant-verifier is Confidant's attestation verifier: it
// challenges guests, appraises their evidence against policies, issues
// signed tokens, publishes its keys and releases keys to attested guests
// (serve), is administered through its admin API (admin), and gives
// security teams the same appraisal offline (appraise, inspect). The
// commands live in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/confidant-cvm/confidant/verifier/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
