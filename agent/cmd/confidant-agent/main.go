// Command confidant-agent is the /init of a Confidant guest's initramfs. As
// PID 1 it mounts the kernel filesystems, reads its configuration, loads
// kernel modules, brings up the network, finds its disks and TEE, and (in
// the stages that follow) attests the guest, gets the disk key released,
// opens the disks and switches to the OS. On any failure it prints one line
// saying where and why, and powers the guest off.
//
// Not as PID 1 it only checks a configuration:
//
//	confidant-agent --check-config agent.yaml [--cmdline "confidant.ip=..."]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/flow"
)

func main() {
	checkConfig := flag.String("check-config", "", "validate this configuration file and exit (runs anywhere)")
	cmdline := flag.String("cmdline", "", "kernel command line to apply with --check-config")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(console.LogWriter(os.Stderr), &slog.HandlerOptions{ReplaceAttr: console.DropTime}))
	if *checkConfig != "" {
		os.Exit(check(*checkConfig, *cmdline, log))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "confidant-agent: not PID 1; it runs as the initramfs /init (use --check-config FILE to validate a configuration)")
		os.Exit(2)
	}
	a := flow.New(flow.Options{Console: console.New(os.Stdout, console.Uptime), Log: log})
	_ = a.Fail(a.Run(context.Background()))
	// Halting failed. PID 1 must not exit (the kernel would panic); wait.
	for {
		time.Sleep(time.Hour)
	}
}

func check(path, cmdline string, log *slog.Logger) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "confidant-agent: %v\n", err)
		return 1
	}
	if _, err := config.Parse(data, cmdline, log); err != nil {
		fmt.Fprintf(os.Stderr, "confidant-agent: %s:\n%v\n", path, err)
		return 1
	}
	fmt.Printf("confidant-agent: %s is valid\n", path)
	return 0
}
