// Package guest manages guests: it keeps their specs and status under the
// state directory, starts them (swtpm, QEMU, the simulated secure
// processor), watches them through QMP, stops and deletes them, and
// re-attaches to running QEMU processes after a hostd restart.
package guest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/hostd/internal/swtpm"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Sentinel errors for outcomes callers branch on.
var (
	// ErrNotFound means no guest has that name.
	ErrNotFound = errors.New("guest not found")
	// ErrExists means a guest with that name exists already.
	ErrExists = errors.New("guest already exists")
	// ErrState means the operation does not apply in the guest's state
	// (starting a running guest, deleting one that is starting, ...).
	ErrState = errors.New("operation not allowed in the guest's state")
	// ErrClosed means the manager is shutting down.
	ErrClosed = errors.New("guest manager closed")
)

// SimVCPUType is the vCPU model named in the simulated launch digest of
// sim guests (QEMU itself runs them with -cpu max). confidant-image measure
// must use the same value for sim reference values.
const SimVCPUType = "EPYC-v4"

// ReportSigner signs simulated SNP reports (*sim.Signer).
type ReportSigner interface {
	Sign(req sim.Request) (report, certTable []byte, err error)
}

// PreflightFunc checks that the host can run a guest with the isolation
// its spec asks for (preflight.Check bound to the host).
type PreflightFunc func(ctx context.Context, s *spec.Spec) error

// OnExit says what Close does with running guests.
type OnExit string

// The OnExit choices.
const (
	// OnExitStop powers guests down (kill after the stop timeout).
	OnExitStop OnExit = "stop"
	// OnExitLeave leaves them running; the next hostd re-attaches.
	OnExitLeave OnExit = "leave"
)

// Options configure a Manager. Zero values are documented per field.
type Options struct {
	// StateDir holds everything hostd keeps (required).
	StateDir string
	// QEMU is the qemu-system-x86_64 binary; empty: from $PATH.
	QEMU string
	// Relay is the confidant-hostd executable that QEMU runs as `relay
	// --to VERIFIER` for each connection of a sim guest to the verifier
	// (an absolute path); empty: this process's executable
	// (os.Executable), which must then be confidant-hostd.
	Relay string
	// Swtpm names the swtpm programs; zero: defaults.
	Swtpm swtpm.Binaries
	// Signer signs sim guests' reports; nil: sim guests cannot start.
	Signer ReportSigner
	// Preflight checks sev-snp and tdx guests before they start; nil: such
	// guests are refused (fail closed).
	Preflight PreflightFunc
	// StopTimeout is how long a stop waits after system_powerdown before
	// killing QEMU; zero: 30s.
	StopTimeout time.Duration
	// StartTimeout bounds swtpm manufacturing and QEMU start-up (not the
	// guest's boot); zero: 2m.
	StartTimeout time.Duration
	// FirmwareTimeout is how long an ovmf sim guest's firmware may take to
	// start a boot image before hostd stops the guest as failed; zero:
	// DefaultFirmwareTimeout.
	FirmwareTimeout time.Duration
	// AllowHostVTPM lets sev-snp and tdx specs use a host swtpm
	// (development only).
	AllowHostVTPM bool
	// Log receives the manager's logs; nil: discarded.
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Manager owns the guests under one state directory.
type Manager struct {
	opts Options
	log  *slog.Logger
	ca   *swtpm.CA

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	vms    map[string]*vm
	closed bool
}

// vm is one guest in memory.
type vm struct {
	name string
	dir  string
	id   string // the guest's UUID (identity.go), fixed for its life

	op sync.Mutex // serialises start, stop and delete

	mu      sync.Mutex // guards the fields below
	spec    spec.Spec
	status  Status
	run     *runtime
	resets  []time.Time
	deleted bool
}

// New loads every guest under opts.StateDir, marks those whose QEMU died
// while hostd was away as failed, and re-attaches to the ones still
// running.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.StateDir == "" {
		return nil, errors.New("creating guest manager: no state directory")
	}
	if opts.QEMU == "" {
		opts.QEMU = "qemu-system-x86_64"
	}
	if opts.Relay == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("creating guest manager: finding the relay program: %w", err)
		}
		opts.Relay = exe
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 30 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if opts.FirmwareTimeout == 0 {
		opts.FirmwareTimeout = DefaultFirmwareTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("resolving state directory: %w", err)
	}
	opts.StateDir = abs
	for _, d := range []string{opts.StateDir, filepath.Join(opts.StateDir, "guests"), filepath.Join(opts.StateDir, "keys")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating state directory: %w", err)
		}
	}
	ca, err := swtpm.NewCA(filepath.Join(opts.StateDir, "swtpm-ca"), opts.Swtpm)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &Manager{opts: opts, log: log, ca: ca, ctx: mctx, cancel: cancel, vms: map[string]*vm{}}
	entries, err := os.ReadDir(filepath.Join(opts.StateDir, "guests"))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("listing guests: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		v, err := m.load(e.Name())
		if err != nil {
			log.Error("skipping unreadable guest", "guest", e.Name(), "err", err)
			continue
		}
		m.vms[v.name] = v
	}
	for _, v := range m.vms {
		m.recover(ctx, v)
	}
	return m, nil
}

func (m *Manager) guestDir(name string) string {
	return filepath.Join(m.opts.StateDir, "guests", name)
}

func (m *Manager) load(name string) (*vm, error) {
	dir := m.guestDir(name)
	v := &vm{name: name, dir: dir}
	if err := readJSON(filepath.Join(dir, specFile), &v.spec); err != nil {
		return nil, fmt.Errorf("loading spec: %w", err)
	}
	if v.spec.Name != name {
		return nil, fmt.Errorf("loading spec: name %q in directory %q", v.spec.Name, name)
	}
	id, created, err := readGuestID(dir)
	if err != nil {
		return nil, err
	}
	if created {
		m.log.Info("gave a guest made by an earlier hostd its identity", "guest", name, "id", id)
	}
	v.id = id
	if err := readJSON(filepath.Join(dir, statusFile), &v.status); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("loading status: %w", err)
		}
		v.status = Status{State: StateStopped, Simulated: v.spec.TEE.Simulated()}
	}
	return v, nil
}

// persist writes v's status; v.mu must be held.
func (m *Manager) persist(v *vm) {
	if v.deleted {
		return
	}
	v.status.UpdatedAt = m.opts.Now().UTC()
	if err := writeJSON(filepath.Join(v.dir, statusFile), v.status); err != nil {
		m.log.Error("persisting guest status", "guest", v.name, "err", err)
	}
}

func (m *Manager) get(name string) (*vm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	v, ok := m.vms[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return v, nil
}

func (v *vm) snapshot() Guest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Guest{Name: v.name, Identity: identityOf(v.id, &v.spec), Spec: v.spec, Status: v.status}
}

// Create validates s (resolving its manifest), stores it and returns the
// new, stopped guest.
func (m *Manager) Create(ctx context.Context, s *spec.Spec) (Guest, error) {
	sp := *s
	if err := sp.ResolveOutside(m.opts.StateDir); err != nil {
		return Guest{}, err
	}
	if err := sp.Validate(spec.ValidateOptions{AllowHostVTPM: m.opts.AllowHostVTPM, StateDir: m.opts.StateDir}); err != nil {
		return Guest{}, err
	}
	id, err := newGuestID()
	if err != nil {
		return Guest{}, err
	}
	dir := m.guestDir(sp.Name)
	// Unix socket paths are limited to 107 bytes.
	if longest := filepath.Join(dir, "tpm", "swtpm.sock"); len(longest) > 100 {
		return Guest{}, fmt.Errorf("%w: state directory path too long for unix sockets (%s)", spec.ErrInvalid, longest)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Guest{}, ErrClosed
	}
	if _, ok := m.vms[sp.Name]; ok {
		return Guest{}, fmt.Errorf("%w: %q", ErrExists, sp.Name)
	}
	if err := m.uniqueHostData(id, &sp); err != nil {
		return Guest{}, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Guest{}, fmt.Errorf("%w: %q (directory left over)", ErrExists, sp.Name)
		}
		return Guest{}, fmt.Errorf("creating guest directory: %w", err)
	}
	v := &vm{name: sp.Name, dir: dir, id: id, spec: sp, status: Status{State: StateStopped, Simulated: sp.TEE.Simulated()}}
	if err := writeGuestID(dir, id); err != nil {
		os.RemoveAll(dir)
		return Guest{}, err
	}
	if err := writeJSON(filepath.Join(dir, specFile), sp); err != nil {
		os.RemoveAll(dir)
		return Guest{}, err
	}
	if sp.SimUEFI() {
		vars := filepath.Join(dir, varStoreFile)
		if _, err := installVarStore(m.opts.StateDir, sp.Image.UEFIVars, vars); err != nil {
			os.RemoveAll(dir)
			return Guest{}, err
		}
		v.status.UEFIVars = vars
	}
	m.persist(v)
	m.vms[v.name] = v
	ident := identityOf(id, &sp)
	m.log.Info("created guest", "guest", v.name, "tee", sp.TEE, "simulated", sp.TEE.Simulated(),
		"id", id, "host_data", ident.HostData, "mrconfigid", ident.MRConfigID)
	return v.snapshot(), nil
}

// uniqueHostData refuses a guest whose HOST_DATA (only an explicit
// snp.host_data can repeat) is another guest's: the two would share one
// token sub. m.mu must be held.
func (m *Manager) uniqueHostData(id string, sp *spec.Spec) error {
	if sp.TEE == spec.TEETDX {
		return nil
	}
	want := hostData(id, sp)
	for _, o := range m.vms {
		o.mu.Lock()
		same := o.spec.TEE != spec.TEETDX && hostData(o.id, &o.spec) == want
		o.mu.Unlock()
		if same {
			return fmt.Errorf("%w: snp.host_data: guest %q has the same HOST_DATA, so both would have one identity (token sub)", spec.ErrInvalid, o.name)
		}
	}
	return nil
}

// Get returns one guest.
func (m *Manager) Get(name string) (Guest, error) {
	v, err := m.get(name)
	if err != nil {
		return Guest{}, err
	}
	return v.snapshot(), nil
}

// List returns every guest, sorted by name.
func (m *Manager) List() []Guest {
	m.mu.Lock()
	vms := make([]*vm, 0, len(m.vms))
	for _, v := range m.vms {
		vms = append(vms, v)
	}
	m.mu.Unlock()
	out := make([]Guest, 0, len(vms))
	for _, v := range vms {
		out = append(out, v.snapshot())
	}
	slices.SortFunc(out, func(a, b Guest) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ConsolePath returns the guest's serial console log file.
func (m *Manager) ConsolePath(name string) (string, error) {
	v, err := m.get(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(v.dir, "console.log"), nil
}

// Delete stops the guest if it runs (killing it after the stop timeout)
// and removes its directory, temp disk, vTPM state and vTPM key.
func (m *Manager) Delete(ctx context.Context, name string) error {
	v, err := m.get(name)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	if err := m.stopLocked(ctx, v, StopOptions{Deallocate: true}); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.vms, name)
	m.mu.Unlock()
	v.mu.Lock()
	v.deleted = true
	v.mu.Unlock()
	errs := []error{}
	if err := os.RemoveAll(v.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing guest directory: %w", err))
	}
	if err := os.Remove(m.tpmKeyFile(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("removing vTPM key: %w", err))
	}
	m.log.Info("deleted guest", "guest", name)
	return errors.Join(errs...)
}

func (m *Manager) tpmKeyFile(name string) string {
	return filepath.Join(m.opts.StateDir, "keys", name+".swtpm-key")
}

// Close ends the manager. With OnExitStop it stops every running guest
// (bounded by ctx and the stop timeout); with OnExitLeave it detaches from
// them so that the next Manager on the same state directory re-attaches.
func (m *Manager) Close(ctx context.Context, onExit OnExit) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	vms := make([]*vm, 0, len(m.vms))
	for _, v := range m.vms {
		vms = append(vms, v)
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(vms))
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.op.Lock()
			defer v.op.Unlock()
			if onExit == OnExitStop {
				errs[i] = m.stopLocked(ctx, v, StopOptions{})
				return
			}
			v.mu.Lock()
			r := v.run
			v.mu.Unlock()
			if r != nil {
				r.detachNow()
				m.log.Info("leaving guest running", "guest", v.name, "pid", r.pid)
			}
		}()
	}
	wg.Wait()
	m.cancel()
	m.wg.Wait()
	return errors.Join(errs...)
}
