package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Defaults of a lab's guests.
const (
	// GuestVCPUs is the vCPU count of the guests (the measurement covers
	// it). One vCPU: TCG guests then compete less for the host's cores.
	GuestVCPUs = 1
	// GuestMemoryMiB is each guest's memory.
	GuestMemoryMiB = 512
	// GuestTempDiskMiB is each guest's temp disk (a sparse file on the host).
	GuestTempDiskMiB = 256
	// KeyName is the name of the OS disk key at the verifier.
	KeyName = "os-disk"
	// TempDiskDevice is the temp disk in the guest (hostd's second virtio
	// disk).
	TempDiskDevice = "/dev/vdb"
)

// Lab is what every scenario shares: the programs, the demo OS root
// filesystem, the guest kernel, one confidant-hostd with its simulated
// secure processor, and a TLS CA for the verifiers.
type Lab struct {
	// Dir is the lab's private directory; everything it makes is below.
	Dir    string
	Repo   string
	Tools  Tools
	Bins   Binaries
	RootFS string
	Hostd  *Hostd
	// SimRoot is the PEM file of the simulated secure processor's root,
	// from hostd's state.
	SimRoot string
	TLS     TLSFiles
	// SecureBoot is the image builder's Secure Boot key of this lab, made
	// for it (as a team makes its own PK/KEK/db).
	SecureBoot SecureBootKey
	// Logf receives progress lines; nil: none.
	Logf func(format string, args ...any)

	mu     sync.Mutex
	worlds []*World
}

// LabOptions configure NewLab.
type LabOptions struct {
	// Dir is an existing, empty directory (short: unix sockets live below).
	Dir string
	// Repo is the repository root.
	Repo string
	// Bins are prebuilt programs; zero: build them into Dir/bin.
	Bins Binaries
	// Logf receives progress lines; nil: none.
	Logf func(format string, args ...any)
}

// NewLab checks the prerequisites, builds the programs (unless given) and
// the demo OS, starts confidant-hostd and makes a TLS CA. On error it
// cleans up what it started. Close stops it.
func NewLab(ctx context.Context, o LabOptions) (*Lab, error) {
	l := &Lab{Dir: o.Dir, Repo: o.Repo, Bins: o.Bins, Logf: o.Logf}
	tools, err := FindTools()
	if err != nil {
		return nil, err
	}
	l.Tools = tools
	if l.Bins.Dir == "" {
		start := time.Now()
		bins, err := BuildBinaries(ctx, tools.Go, o.Repo, filepath.Join(o.Dir, "bin"))
		if err != nil {
			return nil, err
		}
		l.Bins = bins
		l.logf("built confidant-verifier, confidant-hostd, confidant-image and confidant-agent (static) in %v", since(start))
	} else if err := l.Bins.Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	l.RootFS = filepath.Join(o.Dir, "rootfs.img")
	if err := MakeRootFS(ctx, o.Repo, l.RootFS, 64); err != nil {
		return nil, err
	}
	l.logf("made the demo OS root filesystem (busybox, /sbin/init, confidant-guestcheck) in %v", since(start))
	if l.TLS, err = MakeTLS(o.Dir); err != nil {
		return nil, err
	}
	if l.SecureBoot, err = MakeSecureBootKey(o.Dir, "Confidant lab Secure Boot key"); err != nil {
		return nil, err
	}
	hdir := filepath.Join(o.Dir, "hostd")
	if err := os.MkdirAll(hdir, 0o700); err != nil {
		return nil, fmt.Errorf("creating hostd directory: %w", err)
	}
	// The chain is made once in hostd's state; the daemon loads the same.
	root, err := SimRoot(ctx, l.Bins.Hostd, filepath.Join(hdir, "state"))
	if err != nil {
		return nil, err
	}
	l.SimRoot = filepath.Join(o.Dir, "sim-root.pem")
	if err := os.WriteFile(l.SimRoot, root, 0o644); err != nil {
		return nil, fmt.Errorf("writing simulated root: %w", err)
	}
	if l.Hostd, err = StartHostd(ctx, l.Bins.Hostd, hdir); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Lab) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// Close stops the worlds' verifiers and hostd (and its guests), then kills
// anything left running under the lab's directory. It returns what had to
// be killed.
func (l *Lab) Close() []string {
	l.mu.Lock()
	worlds := l.worlds
	l.worlds = nil
	l.mu.Unlock()
	for _, w := range worlds {
		_ = w.Verifier.Stop()
	}
	var killed []string
	if l.Hostd != nil {
		killed = append(killed, l.Hostd.Stop()...)
	}
	return append(killed, Sweep(l.Dir)...)
}

// World is one verifier and one image built against it (the image names
// the verifier's port and CA, so each verifier gets its own image).
type World struct {
	Lab      *Lab
	Name     string
	Dir      string
	Verifier *Verifier
	// Image is set by BuildImage.
	Image *Image
	// Direct: the world's image boots SeaBIOS direct kernel boot (the
	// development mode) under the development policy; false: a signed UKI
	// with UEFI Secure Boot under the production policy.
	Direct bool
}

// ShippedDevelopmentPolicy is the repository's development appraisal
// policy for the simulated TEE (Secure Boot off is a warning).
func (l *Lab) ShippedDevelopmentPolicy() string {
	return filepath.Join(l.Repo, "policies", "appraisal", "sim_development.rego")
}

// ShippedProductionPolicy is the SEV-SNP production appraisal policy with
// the simulated root as its trusted chain (Secure Boot on, PCRs pinned).
func (l *Lab) ShippedProductionPolicy() string {
	return filepath.Join(l.Repo, "policies", "appraisal", "sim_production.rego")
}

// Policy is the shipped appraisal policy the world's verifier runs with.
func (w *World) Policy() string {
	if w.Direct {
		return w.Lab.ShippedDevelopmentPolicy()
	}
	return w.Lab.ShippedProductionPolicy()
}

// emptyReference is the reference values a world's verifier starts with:
// none, so it denies every guest until the image's are loaded.
const emptyReference = `{"version": 1}` + "\n"

// NewWorld picks a port and prepares a verifier there: its own SQLite
// store, the shipped production policy, no reference values yet, trusting
// hostd's simulated root, HTTPS with the lab's CA. Its image boots UEFI
// with Secure Boot. Start it with StartVerifier, then BuildImage.
func (l *Lab) NewWorld(name string) (*World, error) { return l.newWorld(name, false) }

// NewDirectWorld is NewWorld for the development mode: the image boots
// SeaBIOS direct kernel boot, appraised by the development policy.
func (l *Lab) NewDirectWorld(name string) (*World, error) { return l.newWorld(name, true) }

func (l *Lab) newWorld(name string, direct bool) (*World, error) {
	w := &World{Lab: l, Name: name, Dir: filepath.Join(l.Dir, name), Direct: direct}

	if err := os.MkdirAll(w.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating world directory: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	ref := filepath.Join(w.Dir, "reference-initial.json")
	if err := os.WriteFile(ref, []byte(emptyReference), 0o644); err != nil {
		return nil, fmt.Errorf("writing initial reference values: %w", err)
	}
	v, err := NewVerifier(VerifierConfig{
		Bin: l.Bins.Verifier, Dir: filepath.Join(w.Dir, "v"), Port: port,
		Policies:        []string{w.Policy()},
		ReferenceValues: ref, SimRoot: l.SimRoot, TLS: &l.TLS,
	})
	if err != nil {
		return nil, err
	}
	w.Verifier = v
	l.mu.Lock()
	l.worlds = append(l.worlds, w)
	l.mu.Unlock()
	return w, nil
}

// StartVerifier starts the world's verifier.
func (w *World) StartVerifier(ctx context.Context) error {
	start := time.Now()
	if err := w.Verifier.Start(ctx); err != nil {
		return fmt.Errorf("%s: %w", w.Name, err)
	}
	w.Lab.logf("%s: verifier ready at %s in %v", w.Name, w.Verifier.URL, since(start))
	return nil
}

// BuildImage builds the demo OS image against the world's running
// verifier — its URL as the guest reaches it, the lab's CA — with
// confidant-image build registering a new disk key there under KeyName
// (made by the verifier, released only to this image's measurement), then
// loads the image's reference values into the verifier (admin API).
// keyCopy, if true, keeps a recovery copy of the key in the world's
// directory (Image.KeyFile), for tests that look for it where it must not
// be.
func (w *World) BuildImage(ctx context.Context, keyCopy bool) error {
	start := time.Now()
	spec := ImageSpec{
		Name: "confidant-demo-" + w.Name, Version: "1", RootFS: w.Lab.RootFS, Kernel: w.Lab.Tools.Kernel,
		VerifierURL: w.Verifier.GuestURL, CA: w.Lab.TLS.CA, KeyName: KeyName,
		AdminSocket: w.Verifier.AdminSocket(), Out: filepath.Join(w.Dir, "image"),
		VCPUs: GuestVCPUs, TempDisk: TempDiskDevice,
		Direct: w.Direct, SecureBoot: w.Lab.SecureBoot,
	}
	if keyCopy {
		spec.KeyFile = filepath.Join(w.Dir, "os-disk.key")
	}
	im, err := BuildImage(ctx, w.Lab.Bins, spec)
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name, err)
	}
	w.Image = im
	w.Lab.logf("%s: built and encrypted the image for verifier %s, disk key registered there, in %v", w.Name, w.Verifier.GuestURL, since(start))
	if err := w.Verifier.LoadReferenceValues(ctx, im.ReferenceValuesPath()); err != nil {
		return fmt.Errorf("%s: loading reference values: %w", w.Name, err)
	}
	return nil
}

// ShippedReleasePolicy is one of the repository's release policies
// (policies/release/NAME.rego).
func (l *Lab) ShippedReleasePolicy(name string) string {
	return filepath.Join(l.Repo, "policies", "release", name+".rego")
}

// Guest returns the spec of a guest booting the world's image from its own
// copy of the OS disk. bootFile, if not empty, replaces the image's boot
// file: the initrd of a direct-boot image, the ESP of a UEFI one.
func (w *World) Guest(name, bootFile string) (GuestSpec, error) {
	disk := filepath.Join(w.Dir, name+"-os.img")
	if err := CopyFile(disk, w.Image.Path(w.Image.Manifest.OSDisk)); err != nil {
		return GuestSpec{}, err
	}
	g := GuestSpec{
		Name: name, Manifest: w.Image.ManifestPath(), OSDisk: disk, SeaBIOS: w.Direct,
		VCPUs: GuestVCPUs, MemoryMiB: GuestMemoryMiB, TempDiskMiB: GuestTempDiskMiB,
		Verifier: w.Verifier.Addr(),
	}
	if w.Direct {
		g.Initrd = bootFile
	} else {
		g.ESP = bootFile
	}
	return g, nil
}

// BootResult is one guest run.
type BootResult struct {
	Name   string
	Status GuestStatus
	// Console is the serial console log, Boot what Confidant printed on it.
	Console string
	Boot    Boot
	// Took is from the start request to the guest being off.
	Took time.Duration
}

// Boot creates and starts the guest, calls watch (if not nil) in its own
// goroutine with the console path while the guest runs, waits up to
// timeout for it to power off (killing it after that), and reads its
// console. The error is for the harness failing or the guest timing out,
// never for what the guest itself did.
func (l *Lab) Boot(ctx context.Context, dir string, s GuestSpec, timeout time.Duration, watch func(ctx context.Context, console string)) (*BootResult, error) {
	return l.BootWith(ctx, dir, s, timeout, BootHooks{Watch: watch})
}

// BootHooks are what a caller of BootWith does during a boot.
type BootHooks struct {
	// BeforeStart runs after the guest is created and before it starts:
	// what a host does to a guest's state (its UEFI variable store, say)
	// between two boots. Its error ends the boot.
	BeforeStart func() error
	// Watch is Boot's watch.
	Watch func(ctx context.Context, console string)
}

// BootWith is Boot with hooks.
func (l *Lab) BootWith(ctx context.Context, dir string, s GuestSpec, timeout time.Duration, h BootHooks) (*BootResult, error) {
	if err := l.Hostd.CreateGuest(ctx, dir, s); err != nil {
		return nil, err
	}
	if h.BeforeStart != nil {
		if err := h.BeforeStart(); err != nil {
			return nil, fmt.Errorf("before starting %s: %w", s.Name, err)
		}
	}
	watch := h.Watch
	res := &BootResult{Name: s.Name}
	start := time.Now()
	if err := l.Hostd.StartGuest(ctx, s.Name); err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if watch != nil {
			watch(wctx, l.Hostd.ConsolePath(s.Name))
		}
	}()
	st, werr := l.Hostd.WaitStopped(ctx, s.Name, timeout)
	res.Took = time.Since(start)
	stopWatch()
	<-watched
	res.Status = st
	con, cerr := l.Hostd.Console(context.WithoutCancel(ctx), s.Name)
	res.Console = con
	res.Boot = ParseConsole(con)
	if errors.Is(werr, ErrGuestTimeout) {
		return res, fmt.Errorf("%w\nconsole:\n%s", werr, tail(con, 6000))
	}
	if werr != nil {
		return res, werr
	}
	return res, cerr
}

// TailLines calls fn with each complete line appended to the file at path,
// from its current end (offset from; -1: the end when called), polling
// until ctx ends, then once more, so no line written before ctx ended is
// missed.
func TailLines(ctx context.Context, path string, from int64, fn func(line string)) {
	off := from
	if off < 0 {
		off = 0
		if st, err := os.Stat(path); err == nil {
			off = st.Size()
		}
	}
	var partial []byte
	read := func() {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return
		}
		b, err := io.ReadAll(io.LimitReader(f, 16<<20))
		if err != nil || len(b) == 0 {
			return
		}
		off += int64(len(b))
		partial = append(partial, b...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			fn(strings.TrimRight(string(partial[:i]), "\r"))
			partial = partial[i+1:]
		}
	}
	for {
		read()
		select {
		case <-ctx.Done():
			read()
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitConsole polls the console file until it contains one of subs; it
// returns the one found, or "" when ctx ends first.
func WaitConsole(ctx context.Context, path string, subs ...string) string {
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, s := range subs {
				if strings.Contains(string(b), s) {
					return s
				}
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
