package guest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Reboot-loop guard: more than maxResets guest resets within resetWindow
// mark the guest failed instead of relaunching it.
const (
	maxResets   = 3
	resetWindow = 2 * time.Minute
)

// runtime is a running (or re-attached) QEMU and its helpers.
type runtime struct {
	pid      int
	pidStart uint64
	cmd      *exec.Cmd // nil when re-attached
	qmp      *qemu.QMP

	swtpmCmd      *exec.Cmd // nil when re-attached or no swtpm
	swtpmPID      int
	swtpmPIDStart uint64

	exited   chan struct{} // closed when QEMU is gone
	exitErr  error         // cmd.Wait's result (child only), set before exited closes
	finished chan struct{} // closed after the status has been updated
	detach   chan struct{} // closed by Close(leave)
	cancel   context.CancelFunc

	mu       sync.Mutex
	stopping bool   // a stop was requested
	refusal  string // the firmware refused the boot image (firmware.go)
	killed   bool   // the stop had to kill
	shutdown *qemu.ShutdownData

	// eventsDone is closed when the QMP event reader has ended (QEMU
	// closes QMP when it exits), so its last SHUTDOWN event is recorded
	// before the exit is judged.
	eventsDone chan struct{}
}

func (r *runtime) detachNow() {
	select {
	case <-r.detach:
	default:
		close(r.detach)
	}
	r.cancel()
	_ = r.qmp.Close()
}

// Start boots a stopped or failed guest. It returns once QEMU runs (the
// guest's own boot continues).
func (m *Manager) Start(ctx context.Context, name string) (Guest, error) {
	v, err := m.get(name)
	if err != nil {
		return Guest{}, err
	}
	v.op.Lock()
	defer v.op.Unlock()
	if err := m.startLocked(ctx, v); err != nil {
		return v.snapshot(), err
	}
	return v.snapshot(), nil
}

func (m *Manager) startLocked(ctx context.Context, v *vm) error {
	v.mu.Lock()
	if v.deleted {
		v.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, v.name)
	}
	if st := v.status.State; st != StateStopped && st != StateFailed {
		v.mu.Unlock()
		return fmt.Errorf("%w: %q is %s", ErrState, v.name, st)
	}
	sp := v.spec
	v.mu.Unlock()

	if !sp.TEE.Simulated() {
		var err error
		if m.opts.Preflight == nil {
			err = errors.New("no preflight check configured: refusing a hardware-isolated guest")
		} else {
			err = m.opts.Preflight(ctx, &sp)
		}
		if err != nil {
			v.mu.Lock()
			v.status.Reason = "refused: " + err.Error()
			m.persist(v)
			v.mu.Unlock()
			m.log.Warn("refusing to start guest", "guest", v.name, "err", err)
			return fmt.Errorf("starting guest %q: %w", v.name, err)
		}
	} else if m.opts.Signer == nil {
		return fmt.Errorf("starting guest %q: no simulated secure processor signer configured", v.name)
	}

	v.mu.Lock()
	v.status.State = StateStarting
	v.status.Reason = ""
	m.persist(v)
	v.mu.Unlock()

	sctx, cancel := context.WithTimeout(ctx, m.opts.StartTimeout)
	defer cancel()
	r, meas, err := m.launch(sctx, v, &sp)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.status.State = StateFailed
		v.status.Reason = "start: " + err.Error()
		v.status.StoppedAt = m.opts.Now().UTC()
		m.persist(v)
		m.log.Error("starting guest", "guest", v.name, "err", err)
		return fmt.Errorf("starting guest %q: %w", v.name, err)
	}
	v.run = r
	v.status.State = StateRunning
	v.status.Reason = ""
	v.status.PID, v.status.PIDStart = r.pid, r.pidStart
	v.status.SwtpmPID, v.status.SwtpmPIDStart = r.swtpmPID, r.swtpmPIDStart
	v.status.Measurement = meas
	if sp.SimUEFI() {
		v.status.UEFIVars = filepath.Join(v.dir, varStoreFile)
	}
	v.status.TempDiskPresent = sp.TempDiskSize > 0
	v.status.Boots++
	v.status.StartedAt = m.opts.Now().UTC()
	m.persist(v)
	m.log.Info("started guest", "guest", v.name, "tee", sp.TEE, "simulated", sp.TEE.Simulated(), "pid", r.pid, "measurement", meas)
	m.watch(v, r, sp, meas)
	return nil
}

// watch starts the goroutines that follow a running guest: QMP events,
// the simulated secure processor and the exit handler.
func (m *Manager) watch(v *vm, r *runtime, sp spec.Spec, meas string) {
	ctx, cancel := context.WithCancel(m.ctx)
	r.cancel = cancel
	log := m.log.With("guest", v.name)
	r.eventsDone = make(chan struct{})
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		defer close(r.eventsDone)
		for ev := range r.qmp.Events() {
			if ev.Event != "SHUTDOWN" {
				continue
			}
			var d qemu.ShutdownData
			if json.Unmarshal(ev.Data, &d) == nil {
				r.mu.Lock()
				r.shutdown = &d
				r.mu.Unlock()
				log.Info("guest shutdown event", "guest_initiated", d.Guest, "reason", d.Reason)
			}
		}
	}()
	if sp.SimUEFI() {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watchFirmware(ctx, r, filepath.Join(v.dir, "console.log"), log)
		}()
	}
	if sp.TEE.Simulated() {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.serveSP(ctx, filepath.Join(v.dir, "sp.sock"), m.signerFor(sp, hostData(v.id, &sp), meas, log), r, log)
		}()
	}
	go func() {
		defer m.wg.Done()
		select {
		case <-r.exited:
		case <-r.detach:
			return
		}
		// QEMU sends SHUTDOWN just before it exits; the process exit can
		// be seen first. Let the event reader drain QMP (bounded: a
		// re-attached QEMU that never closes QMP must not hang us).
		select {
		case <-r.eventsDone:
		case <-time.After(2 * time.Second):
			log.Warn("QMP events not drained after QEMU exited")
		}
		cancel()
		m.finish(v, r)
	}()
}

// signerFor binds the simulated signer to one launch: its measurement,
// guest policy and HOST_DATA (the guest's identity).
func (m *Manager) signerFor(sp spec.Spec, hostData [32]byte, meas string, log *slog.Logger) simsp.ReportSigner {
	var req sim.Request
	if b, err := hex.DecodeString(meas); err == nil && len(b) == len(req.Measurement) {
		copy(req.Measurement[:], b)
	}
	req.Policy = sp.SNP.Policy
	req.HostData = hostData
	return simsp.ReportSignerFunc(func(rd [simsp.ReportDataSize]byte) ([]byte, []byte, error) {
		r := req
		r.ReportData = rd
		report, certs, err := m.opts.Signer.Sign(r)
		if err == nil {
			log.Info("signed simulated report", "report_data", hex.EncodeToString(rd[:8])+"…")
		}
		return report, certs, err
	})
}

// serveSP connects to QEMU's secure processor socket and answers requests,
// reconnecting while QEMU runs.
func (m *Manager) serveSP(ctx context.Context, path string, signer simsp.ReportSigner, r *runtime, log *slog.Logger) {
	for ctx.Err() == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			err = simsp.Serve(ctx, conn, signer, log)
			conn.Close()
			if err != nil && ctx.Err() == nil {
				log.Warn("simulated secure processor connection ended", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.exited:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finish records how QEMU ended, stops swtpm and relaunches the guest after
// a guest-initiated reboot.
func (m *Manager) finish(v *vm, r *runtime) {
	defer close(r.finished)
	_ = r.qmp.Close()
	stopSwtpm(r)

	r.mu.Lock()
	stopping, killed, sd, refusal := r.stopping, r.killed, r.shutdown, r.refusal
	r.mu.Unlock()

	state, reason, reboot := StateFailed, "", false
	switch {
	case refusal != "":
		reason = refusal
	case stopping && killed:
		state, reason = StateStopped, "stopped by request (killed: the guest did not power off in time)"
	case stopping:
		state, reason = StateStopped, "stopped by request"
	case sd != nil && sd.Guest && sd.Reason == "guest-shutdown":
		state, reason = StateStopped, "guest powered off"
	case sd != nil && sd.Guest && sd.Reason == "guest-reset":
		state, reason, reboot = StateStopped, "guest rebooted", true
	case sd != nil && sd.Guest && sd.Reason == "guest-panic":
		reason = "guest panicked"
	case sd != nil:
		reason = fmt.Sprintf("QEMU shut down (%s) without a request from hostd", sd.Reason)
	case r.cmd == nil:
		reason = "QEMU exited unexpectedly (started by an earlier hostd: exit status unknown)"
	default:
		reason = "QEMU exited unexpectedly: " + exitText(r.exitErr)
		var ee *exec.ExitError
		if errors.As(r.exitErr, &ee) && ee.ExitCode() > 0 {
			// QEMU printed why it gave up.
			if l := lastLine(filepath.Join(v.dir, "qemu.log")); l != "" && !strings.HasPrefix(l, "===") {
				reason += ": " + l
			}
		}
	}

	v.mu.Lock()
	if v.run == r {
		v.run = nil
	}
	now := m.opts.Now().UTC()
	if reboot {
		v.resets = append(v.resets, now)
		for len(v.resets) > 0 && now.Sub(v.resets[0]) > resetWindow {
			v.resets = v.resets[1:]
		}
		if len(v.resets) > maxResets {
			state, reason, reboot = StateFailed, fmt.Sprintf("reboot loop: %d guest reboots within %s", len(v.resets), resetWindow), false
		}
	}
	v.status.State, v.status.Reason = state, reason
	v.status.PID, v.status.PIDStart, v.status.SwtpmPID, v.status.SwtpmPIDStart = 0, 0, 0, 0
	v.status.StoppedAt = now
	m.persist(v)
	v.mu.Unlock()
	m.log.Info("guest ended", "guest", v.name, "state", state, "reason", reason)

	if reboot && m.ctx.Err() == nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if !v.op.TryLock() {
				return // a stop or delete is in progress: it decides
			}
			defer v.op.Unlock()
			if m.ctx.Err() != nil {
				return
			}
			m.log.Info("relaunching guest after its reboot", "guest", v.name)
			_ = m.startLocked(m.ctx, v)
		}()
	}
}
