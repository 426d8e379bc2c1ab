// Package flow is the agent's boot flow as PID 1: the ordered stages from
// mounting the kernel filesystems to switching to the OS root, and the one
// failure path that ends every unsuccessful boot.
//
// Stages, in order (each a pipeline.Stage; a later one may rely on the
// State an earlier one filled in):
//
//	mount       proc, sysfs, devtmpfs, securityfs, /run
//	config      /etc/confidant/agent.yaml narrowed by /proc/cmdline; starts
//	            opening the vTPM (AK, fresh runtime key) in the background
//	modules     finit_module for each listed module, checked in /proc/modules;
//	            the device-mapper and cipher modules at the end of the list
//	            load in the background until unlock
//	configfs    configfs on /sys/kernel/config (for configfs-tsm)
//	network     lo, the static address and default route
//	devices     TEE interface, OS disk by LUKS UUID, temp disk
//	attest      the vTPM opened, TEE interface, verifier client;
//	            challenge, evidence and token, retried under retry_budget
//	release     the key released to the token as a JWE to the runtime key,
//	            unwrapped inside the vTPM (rest of the same budget)
//	unlock      the modules loading in the background checked; the OS
//	            disk's LUKS2 keyslot 0 opened with the key, mounted
//	tempdisk    the temp disk opened or formatted with a key derived from it
//	switchroot  token, configuration, CA and agent (bind-mounted) left in
//	            /run/confidant (tmpfs, moved into the OS), TPM and TEE
//	            closed, key zeroed, stage times printed, the OS's init
//	            executed
//
// The last stage never returns when it succeeds. When the stages run out
// without that handover, the flow fails at "handover": an unattested root
// is never booted. The released key lives only in memory, is never printed
// and is zeroed before the OS starts or the guest halts.
package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/disks"
	"github.com/confidant-cvm/confidant/agent/internal/netcfg"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// ErrNoHandover: every stage succeeded but none handed the machine over to
// the OS.
var ErrNoHandover = errors.New("boot flow ended without switching to the OS root")

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
	// Hardware does what needs the vTPM, the TEE and the disks; zero fields
	// take the real system's.
	Hardware Hardware
	// RunDir is where the switchroot stage leaves the token, the
	// configuration, the CA and the agent for the OS (config.RunDir). It
	// must be in memory (tmpfs): the mount stage's /run, which switch_root
	// moves into the OS.
	RunDir string
	// Self is the agent's own binary, copied into RunDir for the post-boot
	// token service (/proc/self/exe).
	Self string
	// Env is the environment of the OS's init (os.Environ()).
	Env []string
}

// Hardware is what the stages after devices do to the guest, as functions
// so that tests can stand in for what does not exist on a build machine.
// Zero fields take the real system's.
type Hardware struct {
	// OpenTPM opens the vTPM and makes the AK and a fresh runtime key in
	// it, waiting up to wait for the device (vtpm.Open of vtpm.DefaultPath).
	OpenTPM func(ctx context.Context, wait time.Duration) (*vtpm.Device, error)
	// OpenQuoter opens the TEE interface the devices stage found
	// (quote.Open).
	OpenQuoter func(tee boot.TEE, simPort string) (quote.Source, error)
	// EventLog reads the firmware's TCG event log (vclient.ReadEventLog of
	// tpm.EventLogPath, on the securityfs the mount stage mounted).
	EventLog func() ([]byte, error)
	// OpenOS opens and mounts the OS disk (disks.OpenOS).
	OpenOS func(ctx context.Context, d disks.OSDisk, key []byte) (string, error)
	// SetupTemp opens or formats the temp disk and mounts it
	// (disks.SetupTemp).
	SetupTemp func(ctx context.Context, d disks.TempDisk, key []byte) (*disks.TempResult, error)
	// InMemory checks that a directory is on a filesystem in memory
	// (tmpfs or ramfs), where the token may be written.
	InMemory func(dir string) error
	// PlaceAgent makes the agent's binary (Options.Self) appear at a path in
	// the run directory (BindFile).
	PlaceAgent func(self, dst string) error
	// SwitchRoot executes the OS's init in the new root (disks.SwitchRoot);
	// it returns only on failure.
	SwitchRoot func(newRoot, init string, argv, env []string) error
}

func (h Hardware) withDefaults() Hardware {
	if h.OpenTPM == nil {
		h.OpenTPM = func(ctx context.Context, wait time.Duration) (*vtpm.Device, error) {
			return vtpm.Open(ctx, vtpm.DefaultPath, wait)
		}
	}
	if h.OpenQuoter == nil {
		h.OpenQuoter = func(tee boot.TEE, simPort string) (quote.Source, error) {
			return quote.Open(tee.Kind, tee.Path, quote.Options{SimPort: simPort})
		}
	}
	if h.EventLog == nil {
		h.EventLog = func() ([]byte, error) { return vclient.ReadEventLog(tpm.EventLogPath) }
	}
	if h.OpenOS == nil {
		h.OpenOS = disks.OpenOS
	}
	if h.SetupTemp == nil {
		h.SetupTemp = disks.SetupTemp
	}
	if h.InMemory == nil {
		h.InMemory = InMemory
	}
	if h.PlaceAgent == nil {
		h.PlaceAgent = BindFile
	}
	if h.SwitchRoot == nil {
		h.SwitchRoot = disks.SwitchRoot
	}
	return h
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
	hw      Hardware
	con     *console.Console
	log     *slog.Logger
	dev     boot.Devices
	net     *netcfg.Configurer
	modules *boot.ModuleLoader
	st      State
	times   []stageTime

	// What the attest and release stages hold for the later ones; closed,
	// dropped and zeroed by release() before the OS starts or the flow
	// fails.
	opening     *tpmOpening    // the vTPM opened ahead of attest (startTPM)
	lateModules *moduleLoading // modules loading for the disks (startLateModules)
	tpm         *vtpm.Device
	quoter      quote.Source
	session     *vclient.Session
	token       string
	key         []byte
}

// stageTime is how long a stage ran.
type stageTime struct {
	name string
	took time.Duration
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
	if opts.RunDir == "" {
		opts.RunDir = config.RunDir
	}
	if opts.Self == "" {
		opts.Self = "/proc/self/exe"
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	return &Agent{
		opts:    opts,
		hw:      opts.Hardware.withDefaults(),
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
		a.timed("mount", a.mount),
		a.timed("config", a.loadConfig),
		a.timed("modules", a.loadModules),
		a.timed("configfs", a.mountConfigfs),
		a.timed("network", a.network),
		a.timed("devices", a.devices),
		a.timed("attest", a.attest),
		a.timed("release", a.release),
		a.timed("unlock", a.unlock),
		a.timed("tempdisk", a.tempdisk),
		a.timed("switchroot", a.switchRoot),
	}
}

// timed wraps a stage so that its run time is kept for the stage times
// line.
func (a *Agent) timed(name string, run func(ctx context.Context, p pipeline.Progress) error) pipeline.Stage {
	return pipeline.Func(name, func(ctx context.Context, p pipeline.Progress) error {
		start := a.opts.Now()
		defer func() { a.times = append(a.times, stageTime{name: name, took: a.opts.Now().Sub(start)}) }()
		return run(ctx, p)
	})
}

// Run runs the stages. It returns only on failure: a *pipeline.Failure,
// at stage "handover" when the stages ran out without switching to the OS.
// Whatever it returns, the TPM and TEE interface are closed and the key is
// zeroed by then.
func (a *Agent) Run(ctx context.Context) error {
	a.con.Stepf("started as PID %d", os.Getpid())
	return a.run(ctx, a.Stages())
}

func (a *Agent) run(ctx context.Context, stages []pipeline.Stage) error {
	defer a.releaseSecrets()
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

// releaseSecrets zeroes the key, drops the token and the session, and
// closes the TPM (flushing the AK and runtime key) and the TEE interface.
// It may be called more than once.
func (a *Agent) releaseSecrets() {
	clear(a.key)
	a.key = nil
	a.token = ""
	a.session = nil
	if o := a.opening; o != nil {
		// Opened ahead and never taken (a stage before attest failed). One
		// still opening is not waited for: the guest halts next, and a TPM
		// that never answers must not keep it from halting.
		select {
		case <-o.done:
			if o.dev != nil {
				if err := o.dev.Close(); err != nil {
					a.log.Warn("closing TPM", "err", err)
				}
			}
		default:
		}
		a.opening = nil
	}
	if a.quoter != nil {
		if err := a.quoter.Close(); err != nil {
			a.log.Warn("closing TEE interface", "err", err)
		}
		a.quoter = nil
	}
	if a.tpm != nil {
		if err := a.tpm.Close(); err != nil {
			a.log.Warn("closing TPM", "err", err)
		}
		a.tpm = nil
	}
}

// stageTimes renders the stage times: "mount=0.012s config=0.003s ...
// total=1.234s".
func (a *Agent) stageTimes() string {
	var b strings.Builder
	var total time.Duration
	for _, t := range a.times {
		fmt.Fprintf(&b, "%s=%.3fs ", t.name, t.took.Seconds())
		total += t.took
	}
	fmt.Fprintf(&b, "total=%.3fs", total.Seconds())
	return b.String()
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
	if len(a.times) > 0 {
		a.con.Stepf("stage times: %s", a.stageTimes())
	}
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
