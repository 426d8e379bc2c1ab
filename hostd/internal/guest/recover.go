package guest

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
)

// recover handles a guest loaded at start-up: re-attach when its QEMU
// still runs, mark it failed when it died while hostd was away.
func (m *Manager) recover(ctx context.Context, v *vm) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.status
	if st.State != StateRunning && st.State != StateStarting && st.State != StateStopping {
		return
	}
	fail := func(reason string) {
		kill(st.PID, st.PIDStart)
		kill(st.SwtpmPID, st.SwtpmPIDStart)
		v.status.State, v.status.Reason = StateFailed, reason
		v.status.PID, v.status.PIDStart, v.status.SwtpmPID, v.status.SwtpmPIDStart = 0, 0, 0, 0
		v.status.StoppedAt = m.opts.Now().UTC()
		m.persist(v)
		m.log.Warn("guest not recovered", "guest", v.name, "reason", reason)
	}
	if st.State == StateStarting || !sameProcess(st.PID, st.PIDStart) {
		fail(fmt.Sprintf("QEMU (pid %d) exited while hostd was not running (was %s)", st.PID, st.State))
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	q, err := qemu.DialQMP(dctx, filepath.Join(v.dir, "qmp.sock"))
	cancel()
	if err != nil {
		fail("cannot re-attach through QMP (QEMU killed): " + err.Error())
		return
	}
	r := &runtime{
		pid: st.PID, pidStart: st.PIDStart, qmp: q,
		swtpmPID: st.SwtpmPID, swtpmPIDStart: st.SwtpmPIDStart,
		exited: make(chan struct{}), finished: make(chan struct{}), detach: make(chan struct{}),
	}
	go func() {
		// Not our child: QMP hang-up, then the process vanishing, is the exit.
		<-q.Done()
		for sameProcess(r.pid, r.pidStart) {
			time.Sleep(50 * time.Millisecond)
		}
		close(r.exited)
	}()
	v.run = r
	if st.State == StateStopping {
		r.stopping = true
	}
	v.status.State = StateRunning
	m.persist(v)
	m.log.Info("re-attached to running guest", "guest", v.name, "pid", st.PID)
	m.watch(v, r, v.spec, st.Measurement)
}
