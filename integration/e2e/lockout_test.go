package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

const (
	// forcedStops is how many times the lockout test kills the guest
	// after its agent quoted (swtpm's maxTries is 3).
	forcedStops = 10
	// lockoutTimeout bounds the lockout test: setup, 10 short boots and
	// two whole ones (each 5–15 s under TCG).
	lockoutTimeout = 12 * time.Minute
	// tokenLine is the agent's line after the token came: the AK has
	// quoted in this power cycle.
	tokenLine = "] attest: token jti="
)

// TestForcedStopsKeepVTPMUsable is defect 10 of issue 13: a vTPM whose
// guest was killed ten times after its agent quoted (hostd's vm stop
// --force) still lets the next boot attest and open its disks. The AK used
// to be DA-protected: swtpm counted each kill after a quote as a failed
// authorization and, from the fourth boot on, refused the AK with
// TPM_RC_LOCKOUT ("TPM is in DA lockout mode"). A kill before the quote
// does not count (libtpms counts an unclean shutdown only when a
// DA-protected key was used in that power cycle), so each kill here comes
// after the agent's token line.
//
// Then the vTPM is put into lockout on purpose (maxTries 1 and one failed
// authorization, from the host while the guest is off) and the guest must
// still boot: every key the agent makes is noDA.
func TestForcedStopsKeepVTPMUsable(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the vTPM lockout boots (about 3 minutes) run in make test")
	}
	deadline := time.Now().Add(lockoutTimeout)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	lab := newLab(ctx, t)
	w, err := lab.NewWorld("lockout")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StartVerifier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.BuildImage(ctx, false); err != nil {
		t.Fatal(err)
	}
	spec, err := w.Guest("e2e-lockout", "")
	if err != nil {
		t.Fatal(err)
	}
	h := lab.Hostd
	if err := h.CreateGuest(ctx, w.Dir, spec); err != nil {
		t.Fatal(err)
	}
	vtpm := guestVTPM{lab: lab, name: spec.Name}

	start := time.Now()
	for i := 1; i <= forcedStops; i++ {
		forcedStop(ctx, t, h, spec.Name, i)
	}
	t.Logf("%d forced stops after the agent's quote in %v", forcedStops, since(start))

	counter, maxTries := vtpm.lockoutCounter(ctx, t, false)
	t.Logf("vTPM lockout counter after %d forced stops: %d of %d", forcedStops, counter, maxTries)
	if counter != 0 {
		t.Errorf("the forced stops counted as %d failed authorizations (maxTries %d): a key the agent used is not noDA", counter, maxTries)
	}
	b := cleanBoot(ctx, t, h, spec.Name, "after the forced stops")
	if l, ok := b.FindAgent("dictionary-attack lockout"); ok {
		t.Errorf("the agent met a lockout: %s", l.Text)
	}

	// In lockout on purpose: the agent's noDA keys still work.
	counter, maxTries = vtpm.lockoutCounter(ctx, t, true)
	if counter < maxTries {
		t.Fatalf("could not put the vTPM into lockout: counter %d of %d", counter, maxTries)
	}
	cleanBoot(ctx, t, h, spec.Name, "in lockout")
	if counter, maxTries = vtpm.lockoutCounter(ctx, t, false); counter < maxTries {
		t.Errorf("the vTPM left lockout during the boot (counter %d of %d), so the boot did not show what it should", counter, maxTries)
	}

	audit, err := w.Verifier.Audit(ctx)
	if err != nil {
		t.Fatalf("reading audit log: %v", err)
	}
	if n := countAudit(audit, "attest", true); n != forcedStops+2 {
		t.Errorf("audit: %d successful attestations, want %d (every boot)\n%s", n, forcedStops+2, auditText(audit))
	}
	if st, err := h.Show(ctx, spec.Name); err != nil || st.Boots != forcedStops+2 {
		t.Errorf("hostd counts %d boots (%v), want %d", st.Boots, err, forcedStops+2)
	}
}

// forcedStop starts the guest, waits for the agent's token line (the AK
// has quoted) and kills the guest (vm stop --force).
func forcedStop(ctx context.Context, t *testing.T, h *harness.Hostd, name string, i int) {
	t.Helper()
	console := h.ConsolePath(name)
	off := fileSize(console)
	if err := h.StartGuest(ctx, name); err != nil {
		t.Fatalf("boot %d: %v", i, err)
	}
	wctx, cancel := context.WithTimeout(ctx, bootTimeout)
	got := waitConsoleFrom(wctx, console, off, tokenLine, harness.AgentPrefix+"FAILED at ")
	cancel()
	if got != tokenLine {
		_ = h.StopGuest(context.WithoutCancel(ctx), name, true)
		t.Fatalf("boot %d: no token line before the forced stop (found %q):\n%s", i, got, tail(consoleFrom(console, off), 6000))
	}
	if err := h.StopGuest(ctx, name, true); err != nil {
		t.Fatalf("boot %d: vm stop --force: %v", i, err)
	}
	st, err := h.WaitStopped(ctx, name, time.Minute)
	if err != nil {
		t.Fatalf("boot %d: %v", i, err)
	}
	if st.State != "stopped" || st.Reason != "stopped by request" {
		t.Fatalf("boot %d: after vm stop --force the guest is %s (%s)", i, st.State, st.Reason)
	}
}

// cleanBoot starts the guest and waits until it powers itself off; the
// agent must have attested, opened its disks and handed over to the OS.
func cleanBoot(ctx context.Context, t *testing.T, h *harness.Hostd, name, what string) harness.Boot {
	t.Helper()
	console := h.ConsolePath(name)
	off := fileSize(console)
	start := time.Now()
	if err := h.StartGuest(ctx, name); err != nil {
		t.Fatalf("boot %s: %v", what, err)
	}
	st, err := h.WaitStopped(ctx, name, bootTimeout)
	con := consoleFrom(console, off)
	if err != nil {
		t.Fatalf("boot %s: %v\n%s", what, err, tail(con, 6000))
	}
	b := harness.ParseConsole(con)
	if b.Failure != nil {
		t.Fatalf("boot %s: agent FAILED at %s: %s\n%s", what, b.Failure.Stage, b.Failure.Reason, b.AgentText())
	}
	for _, want := range []string{"attest: token jti=", "unlock: OS disk opened", "switchroot: handing over"} {
		if _, ok := b.FindAgent(want); !ok {
			t.Errorf("boot %s: no agent line with %q:\n%s", what, want, b.AgentText())
		}
	}
	if !b.OSInitReached || st.State != "stopped" || st.Reason != "guest powered off" {
		t.Errorf("boot %s: OS init reached %v, guest %s (%s); want the OS to run and power off", what, b.OSInitReached, st.State, st.Reason)
	}
	t.Logf("boot %s: attested and ran the OS in %v", what, since(start))
	return b
}

// guestVTPM reaches a stopped guest's vTPM from the host: its own swtpm
// on the state hostd keeps (guests/NAME/tpm, encrypted under
// keys/NAME.swtpm-key).
type guestVTPM struct {
	lab  *harness.Lab
	name string
}

// lockoutCounter starts swtpm on the guest's state (TPM2_Startup, which
// also counts an unclean last shutdown after DA use, as the next boot
// would), reads TPM_PT_LOCKOUT_COUNTER and TPM_PT_MAX_AUTH_FAIL, with
// lockOut first puts the TPM into lockout (maxTries 1, one failed
// authorization of a DA-protected key), and ends with an orderly
// TPM2_Shutdown, so that the guest's next boot finds what was read.
func (g guestVTPM) lockoutCounter(ctx context.Context, t *testing.T, lockOut bool) (counter, maxTries uint32) {
	t.Helper()
	rw, stop := g.open(ctx, t)
	defer stop()
	if lockOut {
		if err := daLockOut(rw); err != nil {
			t.Fatalf("putting the vTPM into lockout: %v", err)
		}
	}
	vals, _, err := tpm2.GetCapability(rw, tpm2.CapabilityTPMProperties, 2, uint32(tpm2.LockoutCounter))
	if err != nil || len(vals) != 2 {
		t.Fatalf("reading the vTPM's lockout counter: %v (%d values)", err, len(vals))
	}
	c, ok1 := vals[0].(tpm2.TaggedProperty)
	m, ok2 := vals[1].(tpm2.TaggedProperty)
	if !ok1 || !ok2 || c.Tag != tpm2.LockoutCounter || m.Tag != tpm2.MaxAuthFail {
		t.Fatalf("lockout properties: %#v", vals)
	}
	if err := tpm2.Shutdown(rw, tpm2.StartupClear); err != nil {
		t.Fatalf("TPM2_Shutdown: %v", err)
	}
	return c.Value, m.Value
}

// daLockOut sets maxTries to 1 and fails one authorization of a
// DA-protected key (lockout and owner authorizations are empty, as
// swtpm_setup leaves them).
func daLockOut(rw io.ReadWriter) error {
	auth := tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession}
	if err := tpm2.DictionaryAttackParameters(rw, auth, 1, 3600, 3600); err != nil {
		return fmt.Errorf("setting maxTries 1: %w", err)
	}
	tmpl := client.AKTemplateECC()
	tmpl.Attributes &^= tpm2.FlagRestricted
	key, _, err := tpm2.CreatePrimary(rw, tpm2.HandleOwner, tpm2.PCRSelection{}, "", "password", tmpl)
	if err != nil {
		return fmt.Errorf("creating a DA-protected key: %w", err)
	}
	defer tpm2.FlushContext(rw, key)
	digest := sha256.Sum256([]byte("lockout"))
	if _, err := tpm2.Sign(rw, key, "wrong password", digest[:], nil, &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256}); err == nil {
		return errors.New("a wrong password was accepted")
	}
	return nil
}

// open runs swtpm on the guest's vTPM state (the guest is stopped, so its
// own swtpm has exited or is about to) and connects to its data channel.
func (g guestVTPM) open(ctx context.Context, t *testing.T) (io.ReadWriter, func()) {
	t.Helper()
	state := filepath.Join(g.lab.Hostd.StateDir, "guests", g.name, "tpm")
	key := filepath.Join(g.lab.Hostd.StateDir, "keys", g.name+".swtpm-key")
	waitGone(ctx, t, filepath.Join(state, "swtpm.pid"))
	data, ctrl := filepath.Join(g.lab.Dir, "lk-data.sock"), filepath.Join(g.lab.Dir, "lk-ctrl.sock")
	for _, s := range []string{data, ctrl} {
		_ = os.Remove(s)
	}
	p, err := harness.StartProcess("swtpm (lockout test)", filepath.Join(g.lab.Dir, "lk-swtpm.log"), "swtpm",
		"socket", "--tpm2", "--tpmstate", "dir="+state+",mode=0600",
		"--key", "file="+key+",format=hex,mode=aes-256-cbc",
		"--server", "type=unixio,path="+data, "--ctrl", "type=unixio,path="+ctrl,
		"--flags", "not-need-init,startup-clear")
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Logf("stopping swtpm: %v", err)
		}
	}
	for {
		conn, err := net.Dial("unix", data)
		if err == nil {
			return conn, func() { conn.Close(); stop() }
		}
		if exited, werr := p.Exited(); exited {
			t.Fatalf("swtpm on the guest's vTPM state exited: %v\n%s", werr, p.Log(2000))
		}
		select {
		case <-ctx.Done():
			stop()
			t.Fatalf("swtpm on the guest's vTPM state: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGone waits until the process in pidFile (the guest's own swtpm) has
// exited.
func waitGone(ctx context.Context, t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return // never started, or cleaned up
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	for syscall.Kill(pid, 0) == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("the guest's swtpm (pid %d) is still running", pid)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// consoleFrom returns the console log from byte off on.
func consoleFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading console: %v)", err)
	}
	if off > int64(len(b)) {
		off = 0
	}
	return strings.ReplaceAll(string(b[off:]), "\r", "")
}

// waitConsoleFrom polls the console log after byte off until it contains
// one of subs; it returns the one found, or "" when ctx ends first.
func waitConsoleFrom(ctx context.Context, path string, off int64, subs ...string) string {
	for {
		con := consoleFrom(path, off)
		for _, s := range subs {
			if strings.Contains(con, s) {
				return s
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
