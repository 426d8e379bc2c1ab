// Command confidant-loadgen drives a running confidant-verifier with many
// simulated agents, each doing challenge → attest (→ key release) with
// evidence the verifier checks for real, and reports throughput, latency
// percentiles, errors by code and the verifier's memory. The commands live
// in package verifier/internal/loadgen/cli.
//
//	confidant-loadgen init --dir D
//	confidant-verifier serve --sim-root D/sim-root.pem --policy D/policy.rego \
//	  --reference-values D/reference.json ...
//	confidant-loadgen run --dir D --verifier http://127.0.0.1:8443 --concurrency 32 --duration 30s
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/confidant-cvm/confidant/verifier/internal/loadgen/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
