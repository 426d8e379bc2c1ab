// Package swtpm runs one software TPM 2.0 (swtpm 0.7) per sim guest, with
// its state directory encrypted at rest under a key hostd keeps outside
// that directory.
//
// Manufacturing (EK and platform certificates) uses swtpm_setup with a
// private swtpm_setup.conf and a private swtpm-localca configuration, so
// nothing is written to /etc, /var/lib/swtpm-localca or $HOME: the local CA
// lives in the directory given to NewCA.
package swtpm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrKey means the state encryption key is missing or malformed.
	ErrKey = errors.New("swtpm state key unusable")
	// ErrNotReady means swtpm did not create its control socket in time.
	ErrNotReady = errors.New("swtpm not ready")
)

// Binaries names the programs; empty fields mean the name on $PATH
// (swtpm, swtpm_setup) or /usr/bin/swtpm_localca.
type Binaries struct {
	Swtpm, SwtpmSetup, LocalCA string
}

func (b Binaries) withDefaults() Binaries {
	if b.Swtpm == "" {
		b.Swtpm = "swtpm"
	}
	if b.SwtpmSetup == "" {
		b.SwtpmSetup = "swtpm_setup"
	}
	if b.LocalCA == "" {
		b.LocalCA = "/usr/bin/swtpm_localca"
	}
	return b
}

// CA is a private swtpm-localca: the CA that signs every guest's EK and
// platform certificates, with its configuration files.
type CA struct {
	Dir       string // CA state (keys, certificates, serial)
	SetupConf string // the private swtpm_setup.conf
	bins      Binaries
}

// NewCA writes the private configuration under dir (created 0700) and
// returns the CA. The CA's keys are made by swtpm_localca on first use.
func NewCA(dir string, bins Binaries) (*CA, error) {
	bins = bins.withDefaults()
	stateDir := filepath.Join(dir, "localca")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating swtpm CA directory: %w", err)
	}
	files := map[string]string{
		"swtpm-localca.conf": "statedir = " + stateDir + "\n" +
			"signingkey = " + filepath.Join(stateDir, "signkey.pem") + "\n" +
			"issuercert = " + filepath.Join(stateDir, "issuercert.pem") + "\n" +
			"certserial = " + filepath.Join(stateDir, "certserial") + "\n",
		"swtpm-localca.options": "--platform-manufacturer Confidant\n--platform-version 2.1\n--platform-model QEMU\n",
		"swtpm_setup.conf": "create_certs_tool = " + bins.LocalCA + "\n" +
			"create_certs_tool_config = " + filepath.Join(dir, "swtpm-localca.conf") + "\n" +
			"create_certs_tool_options = " + filepath.Join(dir, "swtpm-localca.options") + "\n" +
			"active_pcr_banks = sha256\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return &CA{Dir: stateDir, SetupConf: filepath.Join(dir, "swtpm_setup.conf"), bins: bins}, nil
}

// TPM is one guest's vTPM: its state directory and key file.
type TPM struct {
	StateDir string // encrypted state; also holds the control socket
	KeyFile  string // 64 hex digits (AES-256), outside StateDir
}

// Socket is the control socket QEMU's emulator backend connects to.
func (t TPM) Socket() string { return filepath.Join(t.StateDir, "swtpm.sock") }

// PIDFile is where swtpm writes its process id.
func (t TPM) PIDFile() string { return filepath.Join(t.StateDir, "swtpm.pid") }

// LogFile is swtpm's log.
func (t TPM) LogFile() string { return filepath.Join(t.StateDir, "swtpm.log") }

// Manufactured reports whether the TPM state exists.
func (t TPM) Manufactured() bool {
	_, err := os.Stat(filepath.Join(t.StateDir, "tpm2-00.permall"))
	return err == nil
}

// EnsureKey creates the state key (32 random bytes, hex, mode 0600) if it
// does not exist, and checks it otherwise.
func (t TPM) EnsureKey() error {
	if err := os.MkdirAll(filepath.Dir(t.KeyFile), 0o700); err != nil {
		return fmt.Errorf("creating key directory: %w", err)
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("generating swtpm state key: %w", err)
	}
	f, err := os.OpenFile(t.KeyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		return t.checkKey()
	case err != nil:
		return fmt.Errorf("creating swtpm state key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(k[:]) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(t.KeyFile)
		return fmt.Errorf("writing swtpm state key: %w", err)
	}
	return nil
}

func (t TPM) checkKey() error {
	st, err := os.Stat(t.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKey, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s is readable by others (mode %v)", ErrKey, t.KeyFile, st.Mode().Perm())
	}
	b, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKey, err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return fmt.Errorf("%w: %s does not hold 64 hex digits", ErrKey, t.KeyFile)
	}
	return nil
}

// Manufacture creates the TPM state with EK and platform certificates
// from ca, encrypted with the key (made if missing). It does nothing when
// the state exists.
func (t TPM) Manufacture(ctx context.Context, ca *CA, log *slog.Logger) error {
	if err := t.EnsureKey(); err != nil {
		return err
	}
	if t.Manufactured() {
		return nil
	}
	if err := os.MkdirAll(t.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating TPM state directory: %w", err)
	}
	logFile := filepath.Join(t.StateDir, "swtpm_setup.log")
	cmd := exec.CommandContext(ctx, ca.bins.SwtpmSetup,
		"--tpm2",
		"--tpmstate", t.StateDir,
		"--create-ek-cert", "--create-platform-cert",
		"--config", ca.SetupConf,
		"--keyfile", t.KeyFile, "--cipher", "aes-256-cbc",
		"--not-overwrite",
		"--logfile", logFile,
	)
	// No $HOME or XDG directories: swtpm_setup must only use --config.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tail, _ := os.ReadFile(logFile)
		return fmt.Errorf("manufacturing TPM with swtpm_setup: %w: %s%s", err, lastLines(out, 5), lastLines(tail, 10))
	}
	if !t.Manufactured() {
		return fmt.Errorf("manufacturing TPM with swtpm_setup: no state file written")
	}
	log.Info("manufactured vTPM", "dir", t.StateDir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Args returns swtpm's arguments (without the program name).
//
//   - socket --tpm2 --tpmstate dir=D,mode=0600 --ctrl type=unixio,path=S,mode=0600:
//     one control channel; QEMU passes the data channel over it
//     (QEMU docs/specs/tpm.rst, swtpm(8)).
//   - --key file=K,format=hex,mode=aes-256-cbc: state encrypted at rest.
//   - --terminate: swtpm ends when QEMU closes the connection.
//   - no --flags startup-clear: SeaBIOS (and OVMF) send TPM2_Startup and
//     measure the boot into the PCRs, creating the event log.
func (t TPM) Args() []string {
	return []string{
		"socket", "--tpm2",
		"--tpmstate", "dir=" + t.StateDir + ",mode=0600",
		"--ctrl", "type=unixio,path=" + t.Socket() + ",mode=0600",
		"--key", "file=" + t.KeyFile + ",format=hex,mode=aes-256-cbc",
		"--pid", "file=" + t.PIDFile(),
		"--log", "file=" + t.LogFile() + ",level=1",
		"--terminate",
	}
}

// Start runs swtpm for t in its own session (so it outlives hostd when
// guests are left running) and waits until its control socket accepts
// connections. The caller waits for or kills the returned command.
func (t TPM) Start(ctx context.Context, bins Binaries) (*exec.Cmd, error) {
	bins = bins.withDefaults()
	if err := t.checkKey(); err != nil {
		return nil, err
	}
	_ = os.Remove(t.Socket())
	cmd := exec.Command(bins.Swtpm, t.Args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting swtpm: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		// Detect an early exit without reaping (the caller waits).
		for {
			select {
			case <-exited:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if !alive(cmd.Process.Pid) {
				close(exited)
				return
			}
		}
	}()
	defer func() {
		select {
		case <-exited:
		default:
			close(exited)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Not a connect: connecting would count as QEMU's one client and
		// --terminate would end swtpm when we hang up. The socket file
		// exists from bind(), before swtpm sets its mode and listens, so
		// wait for its mode and until the kernel lists it as listening.
		if st, err := os.Stat(t.Socket()); err == nil && st.Mode().Perm() == 0o600 && listening(t.Socket()) {
			return cmd, nil
		}
		select {
		case <-exited:
			_ = cmd.Wait()
			log, _ := os.ReadFile(t.LogFile())
			return nil, fmt.Errorf("%w: swtpm exited: %s", ErrNotReady, lastLines(log, 5))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("waiting for swtpm: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("%w: no control socket after 10s", ErrNotReady)
		}
	}
}

// listening reports whether a unix socket bound at path is listening,
// from /proc/net/unix (flag __SO_ACCEPTCON), without connecting to it.
func listening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path && f[3] == "00010000" {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
