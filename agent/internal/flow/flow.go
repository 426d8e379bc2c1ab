// Package flow is the agent's boot flow as PID 1: the ordered stages from
// mounting the kernel filesystems to switching to the OS root, and the one
// failure path that ends every unsuccessful boot.
//
// Stages, in order (each a pipeline.Stage; a later one may rely on the
// State an earlier one filled in):
//
//	mount     proc, sysfs, devtmpfs, securityfs, /run
//	config    /etc/confidant/agent.yaml narrowed by /proc/cmdline
//	modules   finit_module for each listed module, checked in /proc/modules
//	configfs  configfs on /sys/kernel/config (for configfs-tsm)
//	network   lo, the static address and default route, verifier reachable
//	devices   TEE interface, OS disk by LUKS UUID, temp disk
//
// The attestation, key release, disk and switch_root stages come next; the
// last stage never returns (it executes the OS's init). When the stages run
// out without that handover, the flow fails at "handover": an unattested
// root is never booted.
package flow

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/netcfg"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
)

// ErrNoHandover: every stage succeeded but none handed the machine over to
// the OS.
var ErrNoHandover = errors.New("boot flow ended without switching to the OS root (no attestation and unlock stages configured)")

// Options configure an Agent. Zero fields take the real system's values.
type Options struct {
	// ConfigPath is the configuration file (config.DefaultPath).
	ConfigPath string
	// CmdlinePath is the kernel command line (/proc/cmdline).
	CmdlinePath string
	// ProcModules is the loaded module table (/proc/modules).
	ProcModules string
	// ProcMounts is the mount table (/proc/mounts).
	ProcMounts string
	// Console receives progress and failure lines. Required.
	Console *console.Console
	// Log receives warnings and details. Required.
	Log *slog.Logger
	// Now is the clock for stage timing (time.Now).
	Now func() time.Time
	// Halt powers off or reboots (boot.Halt).
	Halt func(reboot bool) error
	// DebugShell is the shell run on failure when the config allows it
	// (/bin/sh).
	DebugShell string
}

// State is what the stages found, for the stages after them.
type State struct {
	// Config is the validated configuration (set by "config").
	Config *config.Config
	// Modules are the loaded modules (set by "modules").
	Modules []boot.ModuleResult
	// Network is the configured interface (set by "network").
	Network netcfg.Result
	// TEE is the evidence interface (set by "devices").
	TEE boot.TEE
	// OSDisk is the LUKS OS disk (set by "devices").
	OSDisk boot.BlockDevice
	// TempDisk is the temp disk's device node, empty without one (set by
	// "devices").
	TempDisk string
}

// Agent runs the boot flow.
type Agent struct {
	opts    Options
	con     *console.Console
	log     *slog.Logger
	dev     boot.Devices
	net     *netcfg.Configurer
	modules *boot.ModuleLoader
	st      State
}

// New returns an Agent for the real system.
func New(opts Options) *Agent {
	if opts.ConfigPath == "" {
		opts.ConfigPath = config.DefaultPath
	}
	if opts.CmdlinePath == "" {
		opts.CmdlinePath = "/proc/cmdline"
	}
	if opts.ProcModules == "" {
		opts.ProcModules = "/proc/modules"
	}
	if opts.ProcMounts == "" {
		opts.ProcMounts = "/proc/mounts"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Halt == nil {
		opts.Halt = boot.Halt
	}
	if opts.DebugShell == "" {
		opts.DebugShell = "/bin/sh"
	}
	return &Agent{
		opts:    opts,
		con:     opts.Console,
		log:     opts.Log,
		dev:     boot.NewDevices(),
		net:     netcfg.New(),
		modules: boot.NewModuleLoader(),
	}
}

// State returns what the stages found so far.
func (a *Agent) State() *State { return &a.st }

// Stages returns the boot flow in order.
func (a *Agent) Stages() []pipeline.Stage {
	return []pipeline.Stage{
		pipeline.Func("mount", a.mount),
		pipeline.Func("config", a.loadConfig),
		pipeline.Func("modules", a.loadModules),
		pipeline.Func("configfs", a.mountConfigfs),
		pipeline.Func("network", a.network),
		pipeline.Func("devices", a.devices),
		// attest, release, unlock, tempdisk and switchroot plug in here.
	}
}

// Run runs the stages. It returns only on failure: a *pipeline.Failure,
// at stage "handover" when the stages ran out without switching to the OS.
func (a *Agent) Run(ctx context.Context) error {
	a.con.Stepf("started as PID %d", os.Getpid())
	stages := a.Stages()
	err := pipeline.Run(ctx, stages, a.con, a.opts.Now)
	if err == nil {
		done := make([]string, len(stages))
		for i, s := range stages {
			done[i] = s.Name()
		}
		err = &pipeline.Failure{Stage: "handover", Err: ErrNoHandover, Completed: done}
	}
	return err
}

// Fail ends a failed boot: it prints the failure line and the summary, runs
// the debug shell if the configuration allows it, and powers off or reboots
// as configured (power off when the configuration was not read). It returns
// only if halting failed.
func (a *Agent) Fail(err error) error {
	var f *pipeline.Failure
	if !errors.As(err, &f) {
		f = &pipeline.Failure{Stage: "agent", Err: err}
	}
	action, debug := config.PowerOff, false
	if c := a.st.Config; c != nil {
		action, debug = c.OnFailure, c.DebugShell
	}
	a.con.Failed(f.Stage, f.Err)
	a.con.Summary(console.Summary{
		Stage:        f.Stage,
		Completed:    f.Completed,
		StageSeconds: f.Took.Seconds(),
		Action:       string(action),
		DebugShell:   debug,
	})
	if debug {
		a.runDebugShell()
	}
	if err := a.opts.Halt(action == config.Reboot); err != nil {
		a.con.Linef("cannot %s: %v", action, err)
		return err
	}
	return nil
}

func (a *Agent) runDebugShell() {
	if _, err := os.Stat(a.opts.DebugShell); err != nil {
		a.con.Linef("debug shell %s not available: %v", a.opts.DebugShell, err)
		return
	}
	a.con.Linef("debug shell on the console (debug_shell: true); exit it to continue")
	cmd := exec.Command(a.opts.DebugShell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		a.log.Warn("debug shell ended", "err", err)
	}
}
