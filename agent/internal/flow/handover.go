package flow

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/disks"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
)

// tpmOpening is the vTPM being opened (AK and runtime key made) by a
// goroutine of its own.
type tpmOpening struct {
	done chan struct{} // closed when dev and err are set
	dev  *vtpm.Device
	err  error
}

// startTPM starts opening the vTPM in the background, once. The config
// stage starts it: the TPM driver is built into the kernel, and making the
// two keys is the TPM's work (swtpm's, on the host), so it runs while the
// modules load and the network comes up instead of at the start of attest.
func (a *Agent) startTPM(ctx context.Context) {
	if a.opening != nil || a.tpm != nil {
		return
	}
	o := &tpmOpening{done: make(chan struct{})}
	open, wait := a.hw.OpenTPM, a.st.Config.DeviceTimeout
	go func() {
		defer close(o.done)
		o.dev, o.err = open(ctx, wait)
	}()
	a.opening = o
}

// takeTPM waits for the vTPM (starting to open it if no stage did) and
// hands it over.
func (a *Agent) takeTPM(ctx context.Context) (*vtpm.Device, error) {
	a.startTPM(ctx)
	o := a.opening
	select {
	case <-o.done:
	case <-ctx.Done():
		return nil, ctx.Err() // releaseSecrets closes it if it arrives in time
	}
	a.opening = nil
	return o.dev, o.err
}

// attest takes the vTPM (AK and a fresh runtime key), opens the TEE
// interface, then exchanges fresh evidence for a token. Evidence that
// cannot be collected, a denial, and a verifier that does not answer within
// the retry budget all fail here.
func (a *Agent) attest(ctx context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	dev, err := a.takeTPM(ctx)
	if err != nil {
		return err
	}
	a.tpm = dev
	p.Stepf("attest: vTPM ready (attestation key and a fresh runtime key created)")

	src, err := a.hw.OpenQuoter(a.st.TEE, cfg.SimPort)
	if err != nil {
		return fmt.Errorf("opening TEE interface %s at %s: %w", a.st.TEE.Kind, a.st.TEE.Path, err)
	}
	a.quoter = src

	client, err := newClient(cfg, a.log.With("subsystem", "vclient"))
	if err != nil {
		return err
	}
	a.session, err = vclient.Begin(vclient.Deps{
		Client:     client,
		Quoter:     src,
		TPM:        dev.AK,
		RuntimeKey: dev.RuntimeKey,
		EventLog:   a.hw.EventLog,
		KeyName:    cfg.KeyName,
		Retry:      vclient.Retry{Budget: cfg.RetryBudget},
		Progress:   failedAttempts(p),
		Log:        a.log.With("subsystem", "vclient"),
	})
	if err != nil {
		return err
	}
	tok, err := a.session.Token(ctx)
	if err != nil {
		return err
	}
	a.token = tok
	info, err := vclient.ParseTokenInfo(tok)
	if err != nil { // cannot happen: the client checked the token's shape
		return err
	}
	p.Stepf("attest: token jti=%s exp=%s", info.ID, info.Expiry.Format(time.RFC3339))
	return nil
}

// failedAttempts reports the attempts that failed (the stages report what
// succeeded themselves).
func failedAttempts(p pipeline.Progress) func(vclient.Attempt) {
	return func(at vclient.Attempt) {
		if at.Err == nil {
			return
		}
		switch at.Stage {
		case "attest", "release":
			p.Stepf("%s", at) // "attest: attempt 2 failed: ..."
		default:
			p.Stepf("attest: %s", at) // "attest: challenge: attempt 1 failed: ..."
		}
	}
}

// newClient makes the verifier client the configuration describes: its URL,
// its CA (https) or plain HTTP when allowed, the token audience.
func newClient(cfg *config.Config, log *slog.Logger) (*vclient.Client, error) {
	var pool *x509.CertPool
	if cfg.VerifierURL.Scheme == "https" {
		var err error
		if pool, err = vclient.LoadCAFile(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	return vclient.New(vclient.Config{
		URL:            cfg.VerifierURL,
		RootCAs:        pool,
		AllowPlainHTTP: cfg.AllowPlainHTTP,
		Audience:       cfg.TokenAudience,
		Log:            log,
	})
}

// release gets the key released to the token and unwraps it in the vTPM.
func (a *Agent) release(ctx context.Context, p pipeline.Progress) error {
	key, err := a.session.Release(ctx, a.token)
	if err != nil {
		return err
	}
	a.key = key
	p.Stepf("release: key released (%d bytes), name %s", len(key), a.st.Config.KeyName)
	return nil
}

// unlock waits for the modules loading in the background (device-mapper
// and ciphers), then opens the OS disk with the released key and mounts
// it.
func (a *Agent) unlock(ctx context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	if err := a.awaitLateModules(ctx, p); err != nil {
		return err
	}
	node, err := a.hw.OpenOS(ctx, disks.OSDisk{Device: a.st.OSDisk.Path, UUID: cfg.OSDiskUUID, Mount: cfg.RootMount}, a.key)
	if err != nil {
		return err
	}
	p.Stepf("unlock: OS disk opened (%s), mounted on %s", node, cfg.RootMount)
	return nil
}

// tempdisk opens the temp disk, or formats it when blank, and mounts it in
// the OS root.
func (a *Agent) tempdisk(ctx context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	if a.st.TempDisk == "" {
		p.Stepf("tempdisk: none configured")
		return nil
	}
	// The temp disk is named by device node, which depends on the order
	// the host attaches disks in; one that is the OS disk would be
	// formatted over it.
	if sameDevice(a.st.TempDisk, a.st.OSDisk.Path) {
		return fmt.Errorf("temp disk %s: %w", a.st.TempDisk, ErrTempIsOSDisk)
	}
	res, err := a.hw.SetupTemp(ctx, disks.TempDisk{
		Device:     a.st.TempDisk,
		Mount:      filepath.Join(cfg.RootMount, cfg.TempMount),
		AllowReset: cfg.TempAllowReset,
		Mkfs:       cfg.TempMkfs,
		Mkswap:     cfg.TempMkswap,
		SwapSize:   cfg.TempSwapSize,
		Log:        a.log.With("subsystem", "tempdisk"),
	}, a.key)
	if err != nil {
		return err
	}
	what := "opened"
	if res.Formatted {
		what = "formatted"
	}
	line := fmt.Sprintf("tempdisk: %s (%s, was %s, LUKS2 UUID %s) %s, mounted on %s",
		a.st.TempDisk, res.Mapper, res.Found, res.UUID, what, cfg.TempMount)
	if res.Swap != "" {
		line += ", swap " + strings.TrimPrefix(res.Swap, cfg.RootMount)
	}
	p.Stepf("%s", line)
	return nil
}

// switchRoot leaves the token, the configuration, the CA and the agent in
// the run directory, closes the TPM and the TEE interface, zeroes the key,
// prints the stage times and executes the OS's init. It returns only on
// failure.
func (a *Agent) switchRoot(_ context.Context, p pipeline.Progress) error {
	cfg := a.st.Config
	if err := a.handOff(); err != nil {
		return err
	}
	p.Stepf("switchroot: token and agent configuration left in %s", a.opts.RunDir)
	a.releaseSecrets()
	p.Stepf("switchroot: stage times: %s", a.stageTimes())
	p.Stepf("switchroot: handing over to %s", disks.DefaultInit)
	return a.hw.SwitchRoot(cfg.RootMount, disks.DefaultInit, nil, a.opts.Env)
}

// handOff writes the run directory: the token (0600), and for the post-boot
// token service the configuration, the verifier's CA and the agent itself.
// The directory must be in memory: the token never touches a disk.
func (a *Agent) handOff() error {
	dir := a.opts.RunDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := a.hw.InMemory(dir); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, config.RunTokenFile), strings.NewReader(a.token), 0o600); err != nil {
		return err
	}
	if err := copyFile(a.opts.ConfigPath, filepath.Join(dir, config.RunConfigFile), 0o644); err != nil {
		return err
	}
	if a.st.Config.VerifierURL.Scheme == "https" {
		if err := copyFile(a.st.Config.CAFile, filepath.Join(dir, config.RunCAFile), 0o644); err != nil {
			return err
		}
	}
	return a.hw.PlaceAgent(a.opts.Self, filepath.Join(dir, config.RunAgentFile))
}

// BindFile makes the file src (the agent's own binary) appear at dst
// without copying it: a read-only, nosuid, nodev bind mount over a new
// empty file. The initramfs keeps src in memory after switch_root, and the
// mount moves into the OS with /run. Copying the 17 MB binary cost the boot
// 0.3-0.4 s in a TCG guest. When the bind mount fails, the file is copied
// (mode 0755).
func BindFile(src, dst string) error {
	if p, err := filepath.EvalSymlinks(src); err == nil {
		src = p // /proc/self/exe: the binary itself
	}
	if err := writeFile(dst, strings.NewReader(""), 0o755); err != nil {
		return err
	}
	err := unix.Mount(src, dst, "", unix.MS_BIND, "")
	if err == nil {
		err = unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
		if err != nil {
			_ = unix.Unmount(dst, unix.MNT_DETACH)
		}
	}
	if err != nil {
		return copyFile(src, dst, 0o755)
	}
	return nil
}

// ErrTempIsOSDisk means the configured temp disk is the disk the OS was
// opened from.
var ErrTempIsOSDisk = errors.New("it is the OS disk (the host attached the disks in another order)")

// sameDevice reports whether two device paths name the same node, through
// symlinks.
func sameDevice(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// ErrNotInMemory: the run directory is on a filesystem that may be a disk.
var ErrNotInMemory = errors.New("not on a filesystem in memory (tmpfs or ramfs)")

// InMemory checks that dir is on tmpfs or ramfs.
func InMemory(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking %s: %w", dir, err)
	}
	if st.Type != unix.TMPFS_MAGIC && st.Type != unix.RAMFS_MAGIC {
		return fmt.Errorf("%s: %w (filesystem type %#x)", dir, ErrNotInMemory, st.Type)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying into the run directory: %w", err)
	}
	defer f.Close()
	return writeFile(dst, f, mode)
}

// writeFile writes r to path with mode, replacing what was there.
func writeFile(path string, r io.Reader, mode os.FileMode) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(mode) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
