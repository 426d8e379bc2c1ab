package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrGuestTimeout reports a guest that did not power off in time; it was
// then killed.
var ErrGuestTimeout = errors.New("guest did not power off in time")

// Hostd is a running confidant-hostd daemon with its state directory.
type Hostd struct {
	Bin      string
	StateDir string
	Socket   string
	proc     *Process
}

// StartHostd starts confidant-hostd serve with its state and socket in dir
// and waits until its API answers. Keep dir short: QEMU's and swtpm's unix
// sockets live below it (108-byte limit).
func StartHostd(ctx context.Context, bin, dir string) (*Hostd, error) {
	h := &Hostd{Bin: bin, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "hostd.sock")}
	p, err := StartProcess("confidant-hostd", filepath.Join(dir, "hostd.log"), bin,
		"serve", "--state-dir", h.StateDir, "--socket", h.Socket, "--stop-timeout", "5s", "--on-exit", "stop")
	if err != nil {
		return nil, err
	}
	h.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := h.run(ctx, "vm", "list"); err == nil {
			return h, nil
		} else if time.Now().After(deadline) {
			h.Stop()
			return nil, fmt.Errorf("confidant-hostd did not answer on %s within 30s: %w\n%s", h.Socket, err, p.Log(4000))
		}
		if exited, werr := p.Exited(); exited {
			return nil, fmt.Errorf("confidant-hostd: %w (%v)\n%s", ErrExited, werr, p.Log(4000))
		}
		select {
		case <-ctx.Done():
			h.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Process is the daemon's process.
func (h *Hostd) Process() *Process { return h.proc }

// Stop stops the daemon (which powers its guests off, killing them after
// its stop timeout) and then kills anything still running under the state
// directory. It returns what had to be killed.
func (h *Hostd) Stop() []string {
	if h.proc != nil {
		_ = h.proc.Stop(20 * time.Second)
	}
	return Sweep(h.StateDir)
}

// SimRoot returns the PEM root certificate of the simulated secure
// processor in stateDir (confidant-hostd sim-root), creating the chain if
// needed.
func SimRoot(ctx context.Context, bin, stateDir string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, "sim-root", "--state-dir", stateDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("confidant-hostd sim-root: %w: %s", err, stderr.String())
	}
	return out, nil
}

func (h *Hostd) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Bin, append([]string{"--socket", h.Socket}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("confidant-hostd %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// GuestSpec is the part of hostd's guest spec the harness sets.
type GuestSpec struct {
	Name string
	// Manifest is the image's manifest.json; Initrd, ESP and OSDisk, when
	// set, override the manifest's files.
	Manifest, Initrd, ESP, OSDisk string
	// SeaBIOS boots the image's kernel directly (the development mode of
	// images built with --boot direct); false: UEFI with Secure Boot.
	SeaBIOS     bool
	VCPUs       int
	MemoryMiB   int
	TempDiskMiB int
	// Verifier is host:port of the verifier on the host.
	Verifier string
	// HostData is the 32-byte HOST_DATA of the simulated report, standard
	// base64 ("": none).
	HostData string
}

// YAML renders the spec as hostd's YAML guest spec.
func (s GuestSpec) YAML() []byte {
	var b strings.Builder
	q := func(v string) string { j, _ := json.Marshal(v); return string(j) }
	fmt.Fprintf(&b, "name: %s\ntee: sim\nvcpus: %d\nmemory: %dMiB\n", s.Name, s.VCPUs, s.MemoryMiB)
	fmt.Fprintf(&b, "image:\n  manifest: %s\n", q(s.Manifest))
	if s.Initrd != "" {
		fmt.Fprintf(&b, "  initrd: %s\n", q(s.Initrd))
	}
	if s.ESP != "" {
		fmt.Fprintf(&b, "  esp: %s\n", q(s.ESP))
	}
	if s.OSDisk != "" {
		fmt.Fprintf(&b, "  os_disk: %s\n", q(s.OSDisk))
	}
	if s.SeaBIOS {
		b.WriteString("firmware:\n  kind: seabios\n")
	}
	if s.TempDiskMiB > 0 {
		fmt.Fprintf(&b, "temp_disk_size: %dMiB\n", s.TempDiskMiB)
	}
	fmt.Fprintf(&b, "verifier: %s\n", q(s.Verifier))
	if s.HostData != "" {
		fmt.Fprintf(&b, "snp:\n  host_data: %s\n", q(s.HostData))
	}
	return []byte(b.String())
}

// CreateGuest writes the spec to dir/NAME.yaml and creates the guest.
func (h *Hostd) CreateGuest(ctx context.Context, dir string, s GuestSpec) error {
	path := filepath.Join(dir, s.Name+".yaml")
	if err := os.WriteFile(path, s.YAML(), 0o644); err != nil {
		return fmt.Errorf("writing guest spec: %w", err)
	}
	_, err := h.run(ctx, "vm", "create", "-f", path)
	return err
}

// StartGuest starts a created guest.
func (h *Hostd) StartGuest(ctx context.Context, name string) error {
	_, err := h.run(ctx, "vm", "start", name)
	return err
}

// StopGuest stops a guest; force kills QEMU at once.
func (h *Hostd) StopGuest(ctx context.Context, name string, force bool) error {
	args := []string{"vm", "stop", name}
	if force {
		args = append(args, "--force")
	}
	_, err := h.run(ctx, args...)
	return err
}

// GuestStatus is hostd's status of a guest.
type GuestStatus struct {
	State       string    `json:"state"`
	Reason      string    `json:"reason"`
	Simulated   bool      `json:"simulated"`
	PID         int       `json:"pid"`
	Measurement string    `json:"measurement"`
	Boots       int       `json:"boots"`
	StartedAt   time.Time `json:"started_at"`
	StoppedAt   time.Time `json:"stopped_at"`
	// HostData is the guest's HOST_DATA (hex), from vm show's identity
	// rather than its status.
	HostData string `json:"-"`
}

// Show returns a guest's status.
func (h *Hostd) Show(ctx context.Context, name string) (GuestStatus, error) {
	out, err := h.run(ctx, "vm", "show", name, "--json")
	if err != nil {
		return GuestStatus{}, err
	}
	var g struct {
		Status   GuestStatus `json:"status"`
		Identity struct {
			HostData string `json:"host_data"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(out, &g); err != nil {
		return GuestStatus{}, fmt.Errorf("decoding vm show: %w", err)
	}
	g.Status.HostData = g.Identity.HostData
	return g.Status, nil
}

// WaitStopped polls the guest until it is no longer starting or running.
// After timeout it kills the guest and returns ErrGuestTimeout.
func (h *Hostd) WaitStopped(ctx context.Context, name string, timeout time.Duration) (GuestStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := h.Show(ctx, name)
		if err == nil && st.State != "running" && st.State != "starting" && st.State != "stopping" {
			return st, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			kerr := h.StopGuest(kctx, name, true)
			st, _ := h.Show(kctx, name)
			if ctx.Err() != nil {
				return st, errors.Join(ctx.Err(), kerr)
			}
			return st, errors.Join(fmt.Errorf("%w: %s still %s after %v; killed", ErrGuestTimeout, name, st.State, timeout), kerr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ConsolePath is the guest's serial console log in hostd's state.
func (h *Hostd) ConsolePath(name string) string {
	return filepath.Join(h.StateDir, "guests", name, "console.log")
}

// Console returns the guest's serial console log with terminal control
// sequences filtered (confidant-hostd vm console).
func (h *Hostd) Console(ctx context.Context, name string) (string, error) {
	out, err := h.run(ctx, "vm", "console", name)
	return strings.ReplaceAll(string(out), "\r", ""), err
}
