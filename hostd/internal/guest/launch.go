package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/hostd/internal/swtpm"
)

// launch prepares disks, boot files, vTPM and runs QEMU until QMP answers.
func (m *Manager) launch(ctx context.Context, v *vm, sp *spec.Spec) (*runtime, string, error) {
	boot, tempDisk, err := m.prepareLaunch(v, sp)
	if err != nil {
		return nil, "", err
	}
	cfg := m.qemuConfig(v, sp, boot, tempDisk)
	disk, err := m.openDisks(sp, &cfg)
	if err != nil {
		return nil, "", err
	}
	defer closeAll(disk)
	if sp.TDX.QGSSocket != "" {
		if err := spec.CheckOutside(m.opts.StateDir, sp.TDX.QGSSocket); err != nil {
			return nil, "", fmt.Errorf("checking tdx.qgs_socket: %w", err)
		}
	}

	r := &runtime{
		exited:   make(chan struct{}),
		finished: make(chan struct{}),
		detach:   make(chan struct{}),
	}
	if sp.VTPM == spec.VTPMSwtpm {
		if err := m.startSwtpm(ctx, v, sp, r, &cfg); err != nil {
			return nil, "", err
		}
	}
	if err := m.startQEMU(v, sp, cfg, boot.measurement, disk, r); err != nil {
		r.killSwtpm()
		return nil, "", err
	}
	q, err := dialQMP(ctx, cfg.QMPSocket, r.exited)
	if err != nil {
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.killSwtpm()
		return nil, "", fmt.Errorf("%w (qemu: %s)", err, lastLine(filepath.Join(v.dir, "qemu.log")))
	}
	r.qmp = q
	return r, boot.measurement, nil
}

// prepareLaunch copies what the guest boots into its boot directory and
// makes sure its variable store and temp disk exist ("": none).
func (m *Manager) prepareLaunch(v *vm, sp *spec.Spec) (bootFiles, string, error) {
	bootDir := filepath.Join(v.dir, "boot")
	if err := os.MkdirAll(bootDir, 0o700); err != nil {
		return bootFiles{}, "", fmt.Errorf("creating boot directory: %w", err)
	}
	boot, err := prepareBoot(sp, bootDir, m.opts.StateDir)
	if err != nil {
		return bootFiles{}, "", err
	}
	if sp.SimUEFI() {
		// A guest created by an earlier hostd may lack its store.
		if _, err := installVarStore(m.opts.StateDir, sp.Image.UEFIVars, filepath.Join(v.dir, varStoreFile)); err != nil {
			return bootFiles{}, "", err
		}
	}
	tempDisk := ""
	if sp.TempDiskSize > 0 {
		tempDisk = filepath.Join(v.dir, "temp.img")
		if err := ensureTempDisk(tempDisk, int64(sp.TempDiskSize)); err != nil {
			return bootFiles{}, "", err
		}
	}
	return boot, tempDisk, nil
}

// openDisks opens the OS disk (and the ESP of a simulated UEFI guest),
// checks them as opened, and hands them to QEMU as file descriptors: a
// symlink swapped since validation cannot point QEMU at hostd's own files.
// The caller closes them once QEMU started.
func (m *Manager) openDisks(sp *spec.Spec, cfg *qemu.Config) ([]*os.File, error) {
	disk, err := openOSDisk(m.opts.StateDir, sp.Image.OSDisk, cfg)
	if err != nil {
		return nil, err
	}
	if sp.SimUEFI() {
		esp, err := openESP(m.opts.StateDir, sp.Image.ESP, cfg, len(disk))
		if err != nil {
			closeAll(disk)
			return nil, err
		}
		disk = append(disk, esp)
	}
	return disk, nil
}

// startSwtpm manufactures (once) and starts the guest's swtpm.
func (m *Manager) startSwtpm(ctx context.Context, v *vm, sp *spec.Spec, r *runtime, cfg *qemu.Config) error {
	tpm := swtpm.TPM{StateDir: filepath.Join(v.dir, "tpm"), KeyFile: m.tpmKeyFile(v.name)}
	if err := tpm.Manufacture(ctx, m.ca, m.log.With("guest", v.name)); err != nil {
		return err
	}
	cmd, err := tpm.Start(ctx, m.opts.Swtpm)
	if err != nil {
		return err
	}
	r.swtpmCmd, r.swtpmPID = cmd, cmd.Process.Pid
	r.swtpmPIDStart, _ = procStart(r.swtpmPID)
	cfg.TPMSocket, cfg.TPMDevice = tpm.Socket(), sp.TPMDevice
	return nil
}

// killSwtpm ends the swtpm of a launch that failed.
func (r *runtime) killSwtpm() {
	if r.swtpmCmd != nil {
		_ = r.swtpmCmd.Process.Kill()
		_ = r.swtpmCmd.Wait()
	}
}

// startQEMU marks the serial log and starts QEMU, logging to qemu.log.
func (m *Manager) startQEMU(v *vm, sp *spec.Spec, cfg qemu.Config, measurement string, disk []*os.File, r *runtime) error {
	args, err := qemu.Args(cfg)
	if err != nil {
		return err
	}
	for _, s := range []string{cfg.QMPSocket, cfg.SPSocket} {
		if s != "" {
			_ = os.Remove(s)
		}
	}
	label := "hardware-isolated (" + string(sp.TEE) + ")"
	if sp.TEE.Simulated() {
		label = "SIMULATED TEE: no hardware isolation"
	}
	appendLine(cfg.SerialLog, fmt.Sprintf(startMarker+"%s at %s, %s, measurement %s ===",
		sp.Name, m.opts.Now().UTC().Format(time.RFC3339), label, orNone(measurement)))

	qlog, err := os.OpenFile(filepath.Join(v.dir, "qemu.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening qemu.log: %w", err)
	}
	fmt.Fprintf(qlog, "=== %s %s %s\n", m.opts.Now().UTC().Format(time.RFC3339), m.opts.QEMU, strings.Join(args, " "))
	cmd := exec.Command(m.opts.QEMU, args...)
	cmd.Dir = v.dir
	cmd.ExtraFiles = disk
	cmd.Stdout, cmd.Stderr = qlog, qlog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	qlog.Close()
	if err != nil {
		return fmt.Errorf("starting QEMU: %w", err)
	}
	r.cmd, r.pid = cmd, cmd.Process.Pid
	r.pidStart, _ = procStart(r.pid)
	go func() {
		r.exitErr = cmd.Wait()
		close(r.exited)
	}()
	return nil
}

// dialQMP retries until QEMU's QMP socket answers, QEMU exits or ctx ends.
func dialQMP(ctx context.Context, path string, exited <-chan struct{}) (*qemu.QMP, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		q, err := qemu.DialQMP(dctx, path)
		cancel()
		if err == nil {
			return q, nil
		}
		select {
		case <-exited:
			return nil, errors.New("QEMU exited during start-up")
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for QMP: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
