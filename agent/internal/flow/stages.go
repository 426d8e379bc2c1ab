package flow

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/netcfg"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
)

// mount mounts the kernel filesystems and checks they are there.
func (a *Agent) mount(_ context.Context, p pipeline.Progress) error {
	ms := boot.EarlyMounts()
	if err := boot.MountAll(ms); err != nil {
		return err
	}
	f, err := os.Open(a.opts.ProcMounts)
	if err != nil {
		return fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	if err := boot.CheckMounted(f, ms); err != nil {
		return err
	}
	targets := make([]string, len(ms))
	for i, m := range ms {
		targets[i] = m.Target
	}
	p.Stepf("mounted filesystems: %s", strings.Join(targets, " "))
	return nil
}

// loadConfig reads and validates the configuration, then starts opening
// the vTPM (startTPM).
func (a *Agent) loadConfig(ctx context.Context, p pipeline.Progress) error {
	data, err := os.ReadFile(a.opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	cmdline, err := os.ReadFile(a.opts.CmdlinePath)
	if err != nil {
		return fmt.Errorf("reading kernel command line: %w", err)
	}
	cfg, err := config.Parse(data, string(cmdline), a.log)
	if err != nil {
		return err
	}
	if cfg.VerifierURL.Scheme == "https" {
		if _, err := os.Stat(cfg.CAFile); err != nil {
			return fmt.Errorf("verifier CA: %w", err)
		}
	}
	a.st.Config = cfg
	a.startTPM(ctx)
	from := "none"
	if len(cfg.FromCmdline) > 0 {
		from = strings.Join(cfg.FromCmdline, " ")
	}
	p.Stepf("configuration loaded from %s (verifier %s, tee %s; kernel command line set: %s)",
		a.opts.ConfigPath, cfg.VerifierURL.Redacted(), cfg.TEE, from)
	return nil
}

// loadModules loads the listed modules and checks they are live. The
// device-mapper and cipher modules at the end of the list only the disks
// need: they load in the background (startLateModules) while the network,
// the devices and the verifier are seen to, and the unlock stage waits for
// them (awaitLateModules).
func (a *Agent) loadModules(_ context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	var paths []string
	if cfg.ModulesFile != "" {
		f, err := os.Open(cfg.ModulesFile)
		if err != nil {
			return fmt.Errorf("reading module list: %w", err)
		}
		paths, err = boot.ReadModuleList(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	paths = append(paths, cfg.Modules...)
	now, later := boot.SplitDeferred(paths)
	res, err := a.modules.Load(now)
	a.st.Modules = res
	if err != nil {
		return err
	}
	live, already, err := a.checkLoaded(res, p)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("loaded %d modules (%d already loaded), live in /proc/modules: %s", len(live), already, strings.Join(live, " "))
	if len(later) > 0 {
		names := make([]string, len(later))
		for i, l := range later {
			names[i] = boot.ModuleName(l)
		}
		line += "; loading in the background for the disks: " + strings.Join(names, " ")
		a.startLateModules(later)
	}
	p.Stepf("%s", line)
	return nil
}

// checkLoaded checks that the loaded modules of res are live, and reports
// those without their hardware. It returns the live ones' names and how
// many were loaded before.
func (a *Agent) checkLoaded(res []boot.ModuleResult, p pipeline.Progress) (live []string, already int, err error) {
	var absent []string
	for _, r := range res {
		switch r.Status {
		case boot.NoDevice:
			absent = append(absent, r.Name)
			continue
		case boot.AlreadyLoaded:
			already++
		}
		live = append(live, r.Name)
	}
	if len(absent) > 0 {
		p.Stepf("modules without their hardware (ENODEV, skipped): %s", strings.Join(absent, " "))
	}
	f, err := os.Open(a.opts.ProcModules)
	if err != nil {
		return nil, 0, fmt.Errorf("reading /proc/modules: %w", err)
	}
	defer f.Close()
	return live, already, boot.CheckLive(f, live)
}

// moduleLoading is a module list being loaded by a goroutine of its own.
type moduleLoading struct {
	done chan struct{} // closed when res and err are set
	res  []boot.ModuleResult
	err  error
}

// startLateModules starts loading paths in the background. finit_module
// is mostly the kernel's work (copying, checking the signature, the
// module's init); it runs while the flow waits for the host and the
// verifier.
func (a *Agent) startLateModules(paths []string) {
	l := &moduleLoading{done: make(chan struct{})}
	loader := a.modules
	go func() {
		defer close(l.done)
		// On a thread of its own that only runs when nothing else would
		// (SCHED_IDLE): the loading fills the time the flow waits, and
		// takes none from it. The thread ends with the goroutine.
		runtime.LockOSThread()
		_ = unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0)
		l.res, l.err = loader.Load(paths)
	}()
	a.lateModules = l
}

// awaitLateModules waits for the modules loading in the background, if
// any, and checks them as the modules stage checks its own.
func (a *Agent) awaitLateModules(ctx context.Context, p pipeline.Progress) error {
	l := a.lateModules
	if l == nil {
		return nil
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.lateModules = nil
	a.st.Modules = append(a.st.Modules, l.res...)
	if l.err != nil {
		return l.err
	}
	live, _, err := a.checkLoaded(l.res, p)
	if err != nil {
		return err
	}
	p.Stepf("unlock: modules loaded in the background, live in /proc/modules: %s", strings.Join(live, " "))
	return nil
}

// mountConfigfs mounts configfs. Only configfs-tsm needs it; for other TEE
// kinds a failure is reported and the flow goes on.
func (a *Agent) mountConfigfs(_ context.Context, p pipeline.Progress) error {
	m := boot.ConfigfsMount()
	err := boot.MountAll([]boot.Mount{m})
	if err == nil {
		p.Stepf("mounted configfs on %s", m.Target)
		return nil
	}
	if a.st.Config.TEE == config.TEEConfigfsTSM {
		return err
	}
	p.Stepf("configfs not available (not needed for tee %s): %v", a.st.Config.TEE, err)
	return nil
}

// network brings up lo and the configured interface. It does not look at
// the verifier: the attest stage's first request does, within its retries
// and budget (a look here cost the boot a TCP handshake, 60-120 ms in a TCG
// guest).
func (a *Agent) network(ctx context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	if err := a.net.Loopback(); err != nil {
		return err
	}
	desc := "lo"
	if cfg.Address.IsValid() || cfg.Interface != "" {
		wctx, cancel := context.WithTimeout(ctx, cfg.DeviceTimeout)
		res, err := a.net.Configure(wctx, netcfg.Params{Interface: cfg.Interface, Address: cfg.Address, Gateway: cfg.Gateway})
		cancel()
		if err != nil {
			return err
		}
		a.st.Network = res
		desc += ", " + res.Interface.Name
		if res.Address.IsValid() {
			desc += " " + res.Address.String()
		}
		if res.Gateway.IsValid() {
			desc += " via " + res.Gateway.String()
		}
	}
	p.Stepf("network up: %s", desc)
	return nil
}

// devices finds the TEE interface, the OS disk and the temp disk.
func (a *Agent) devices(ctx context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	ctx, cancel := context.WithTimeout(ctx, cfg.DeviceTimeout)
	defer cancel()

	tee, err := a.dev.FindTEE(ctx, cfg.TEE, cfg.SimPort)
	if err != nil {
		return fmt.Errorf("finding TEE interface: %w", err)
	}
	a.st.TEE = tee
	p.Stepf("TEE interface: %s at %s", tee.Kind, tee.Path)

	osDisk, err := a.dev.FindLUKS(ctx, cfg.OSDiskUUID)
	if err != nil {
		return fmt.Errorf("finding OS disk: %w", err)
	}
	a.st.OSDisk = osDisk
	p.Stepf("OS disk: %s (LUKS UUID %s)", osDisk.Path, osDisk.LUKSUUID)

	if cfg.TempDevice != "" {
		dev, err := a.dev.WaitBlock(ctx, cfg.TempDevice)
		if err != nil {
			return fmt.Errorf("finding temp disk: %w", err)
		}
		devs, err := a.dev.BlockDevices()
		if err != nil {
			return err
		}
		if err := a.dev.CheckDistinct(osDisk, dev, devs); err != nil {
			return fmt.Errorf("checking temp disk %s: %w", cfg.TempDevice, err)
		}
		a.st.TempDisk = cfg.TempDevice
		p.Stepf("temp disk: %s (%s)", cfg.TempDevice, dev)
	}
	return nil
}
