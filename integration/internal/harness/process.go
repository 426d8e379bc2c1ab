// Package harness runs Confidant's programs the way an operator does —
// confidant-image, confidant-verifier and confidant-hostd as separate
// processes built from this repository — and reads back what happened: the
// guest's serial console and the verifier's audit log. The end-to-end tests
// (integration/e2e) and the demo (integration/cmd/confidant-demo) are both
// built on it.
//
// Every process it starts runs in its own process group and is stopped by
// its Stop method; [Sweep] kills whatever is left under a directory (QEMU
// and swtpm run in their own sessions, started by hostd).
package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrExited reports a process that ended before it was ready.
var ErrExited = errors.New("process exited")

// Process is a long-running program started by the harness: its own
// process group, output appended to a log file.
type Process struct {
	// Name is a short label for messages.
	Name string
	// LogPath is the file holding the process's stdout and stderr.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProcess starts bin with args in a new process group, its output
// appended to logPath. The process gets SIGTERM if the calling program dies
// first (so a daemon can still stop what it started).
func StartProcess(name, logPath, bin string, args ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s log: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id (and process group id).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Log returns the process's output so far (the last max bytes; 0: all).
func (p *Process) Log(max int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogPath, err)
	}
	if max > 0 && len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(b)
}

// Stop sends SIGTERM to the process group, waits up to grace, then kills the
// group. It returns nil when the process had already exited or exited on
// SIGTERM with status 0; otherwise what it exited with.
func (p *Process) Stop(grace time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("stopping %s: killed after %v without exiting on SIGTERM", p.Name, grace)
}

// Sweep kills (SIGKILL) every process whose command line mentions dir and
// returns their descriptions. dir must be a directory the harness made
// (a unique temporary directory), so only the harness's own processes —
// QEMU and swtpm started by hostd, which run in their own sessions — match.
func Sweep(dir string) []string {
	dir = filepath.Clean(dir)
	if len(dir) < len("/tmp/x") {
		return nil // refuse anything that could match broadly
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var killed []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if !mentionsDir(cmdline, dir) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			if len(cmdline) > 120 {
				cmdline = cmdline[:120] + "…"
			}
			killed = append(killed, fmt.Sprintf("%d %s", pid, cmdline))
		}
	}
	return killed
}

// mentionsDir reports whether cmdline names dir or a path under it.
func mentionsDir(cmdline, dir string) bool {
	for i := 0; ; {
		j := strings.Index(cmdline[i:], dir)
		if j < 0 {
			return false
		}
		end := i + j + len(dir)
		if end == len(cmdline) || strings.ContainsRune("/ ,=:\"'", rune(cmdline[end])) {
			return true
		}
		i = end
	}
}
