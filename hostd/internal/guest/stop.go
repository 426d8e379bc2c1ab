package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StopOptions modify Stop.
type StopOptions struct {
	// Deallocate removes the temp disk; the next start makes a blank one.
	Deallocate bool
	// Force kills QEMU at once instead of asking the guest to power off.
	Force bool
}

func stopSwtpm(r *runtime) {
	if r.swtpmPID == 0 {
		return
	}
	// swtpm --terminate ends when QEMU hangs up; give it a moment.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && sameProcess(r.swtpmPID, r.swtpmPIDStart) {
		time.Sleep(20 * time.Millisecond)
	}
	if sameProcess(r.swtpmPID, r.swtpmPIDStart) {
		_ = syscall.Kill(r.swtpmPID, syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		kill(r.swtpmPID, r.swtpmPIDStart)
	}
	if r.swtpmCmd != nil {
		_ = r.swtpmCmd.Wait()
	}
}

// Stop powers the guest off (QMP system_powerdown, then SIGKILL after the
// stop timeout, or at once with Force) and, with Deallocate, removes its
// temp disk. Stopping a stopped guest only deallocates.
func (m *Manager) Stop(ctx context.Context, name string, opts StopOptions) (Guest, error) {
	v, err := m.get(name)
	if err != nil {
		return Guest{}, err
	}
	v.op.Lock()
	defer v.op.Unlock()
	err = m.stopLocked(ctx, v, opts)
	return v.snapshot(), err
}

func (m *Manager) stopLocked(ctx context.Context, v *vm, opts StopOptions) error {
	v.mu.Lock()
	r := v.run
	if r != nil {
		v.status.State = StateStopping
		m.persist(v)
	}
	v.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		r.stopping = true
		r.mu.Unlock()
		if !opts.Force {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := r.qmp.Execute(pctx, "system_powerdown", nil)
			cancel()
			if err != nil {
				m.log.Warn("asking guest to power off", "guest", v.name, "err", err)
			}
			t := time.NewTimer(m.opts.StopTimeout)
			select {
			case <-r.exited:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		select {
		case <-r.exited:
		default:
			r.mu.Lock()
			r.killed = !opts.Force
			r.mu.Unlock()
			kill(r.pid, r.pidStart)
		}
		select {
		case <-r.finished:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("stopping guest %q: QEMU (pid %d) did not exit after SIGKILL", v.name, r.pid)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.status.State == StateStarting || v.status.State == StateStopping {
		v.status.State = StateStopped
	}
	if opts.Deallocate {
		err := os.Remove(filepath.Join(v.dir, "temp.img"))
		switch {
		case err == nil:
			m.log.Info("deallocated guest (temp disk removed)", "guest", v.name)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("deallocating guest %q: %w", v.name, err)
		}
		v.status.TempDiskPresent = false
		if v.status.State == StateStopped && !strings.HasSuffix(v.status.Reason, "deallocated") {
			v.status.Reason = strings.TrimPrefix(v.status.Reason+", deallocated", ", ")
		}
	}
	m.persist(v)
	return nil
}
