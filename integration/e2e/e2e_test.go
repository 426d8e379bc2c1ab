// Package e2e boots Confidant guests end to end on this machine: the four
// programs built from this repository run as separate processes — the
// verifier (SQLite store, the shipped production policy for the simulated
// TEE, trusting hostd's simulated root), confidant-image building and encrypting the demo OS,
// confidant-hostd booting the guest under QEMU (TCG) with swtpm — and the
// tests read the outcome from the guest's serial console and the
// verifier's audit log.
package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

const (
	// suiteTimeout bounds the whole suite (setup, every boot); it ends a
	// minute before go test's own deadline, so cleanup always runs.
	suiteTimeout = 8 * time.Minute
	// bootTimeout bounds one guest, from start to power-off. A boot takes
	// 4–8 s under TCG on a quiet machine; a verifier down for the whole
	// retry budget (60 s) adds that.
	bootTimeout = 4 * time.Minute
	// maxGuests is how many guests boot at once (the host has 2 cores);
	// the one whose verifier is down, idle most of its run, comes on top.
	maxGuests = 2
)

// verifierMode says when the world's verifier runs.
type verifierMode int

const (
	verifierUp   verifierMode = iota // running before the guest starts
	verifierDown                     // never running while the guest runs
	verifierLate                     // started after the agent's first failed attempt
)

type scenario struct {
	// appraisal, if set, writes the appraisal policy for the world and
	// returns its path (default: the shipped development policy).
	appraisal func(t *testing.T, w *harness.World) string
	// release, if set, names the shipped release policy
	// (policies/release/NAME.rego) that replaces the one the image build
	// registered the disk key with.
	release string
	mode    verifierMode
	// direct: the world's image boots SeaBIOS direct kernel boot under the
	// development policy (the development mode); false: a signed UKI under
	// UEFI Secure Boot and the production policy.
	direct bool
	// bootFile, if set, returns a file that replaces the image's boot file
	// (the initrd of a direct-boot image, the ESP of a UEFI one), after
	// setting r.tamper to what was changed.
	bootFile func(t *testing.T, r *run) string
	// beforeStart, if set, runs between creating and starting the guest:
	// what the host does to the guest's state.
	beforeStart func(t *testing.T, r *run, guest string) error
	// wantFirmwareRefusal: the firmware refuses to start the boot image,
	// so the agent never runs.
	wantFirmwareRefusal bool
	// wantStage is the stage the agent fails at; "" means the guest boots
	// its OS.
	wantStage string
	// wantReason are substrings of the failure line's reason.
	wantReason []string
	// check is more assertions on the run and the audit log.
	check func(t *testing.T, r *run)
	// verifierArgs are more serve flags for the world's verifier.
	verifierArgs []string
	// releasePolicy, if set, writes a release policy for the disk key and
	// returns its path (instead of release).
	releasePolicy func(t *testing.T, w *harness.World) string
	// during, if set, runs beside the boot (console: the serial log's
	// path); its error fails the scenario.
	during func(ctx context.Context, t *testing.T, w *harness.World, console string) error
}

// run is one scenario's outcome.
type run struct {
	world  *harness.World
	res    *harness.BootResult
	audit  []harness.AuditRecord
	tamper string // what was changed, for messages
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the end-to-end boots (about 2 minutes) run in make test")
	}
	deadline := time.Now().Add(suiteTimeout)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	lab := newLab(ctx, t)

	scenarios := map[string]scenario{
		// The main flow, the production path: UEFI Secure Boot, the signed
		// UKI, PCRs 4, 7 and 11 as predicted, affirming; then release,
		// unlock, temp disk, OS.
		"boot": {check: checkProductionBoot},
		// The host changed one byte of the signed UKI: the firmware refuses
		// to start it.
		"tampered-uki": tamperedUKIScenario(),
		// The host turned Secure Boot off in the guest's variable store and
		// boots the changed UKI: it runs, and attestation is denied.
		"secure-boot-off": secureBootOffScenario(),
		// Development mode (SeaBIOS direct boot): the host changed one byte
		// of the initramfs, so the launch measurement is no longer a
		// reference value.
		"tampered-initramfs": {
			direct: true, bootFile: tamperInitramfs,
			wantStage: "attest", wantReason: []string{"evidence_denied", "is not in the reference set"},
			check: func(t *testing.T, r *run) {
				want, err := r.world.Image.Measurement(harness.GuestVCPUs)
				if err != nil {
					t.Fatal(err)
				}
				if r.res.Status.Measurement == want || r.res.Status.Measurement == "" {
					t.Errorf("hostd measured %q for the tampered initramfs; the image's is %q", r.res.Status.Measurement, want)
				}
				checkDenied(t, r, "attest", "is not in the reference set")
			},
		},
		// The security team revoked the image's measurement in the policy.
		"policy-forbids": {
			appraisal: forbidMeasurement, wantStage: "attest", wantReason: []string{"evidence_denied", "revoked"},
			check: func(t *testing.T, r *run) { checkDenied(t, r, "attest", "revoked") },
		},
		// Attestation passes, the key's release policy says no: the default
		// policy releases only to SEV-SNP or TDX hardware.
		"release-denied": {
			release: "default", wantStage: "release", wantReason: []string{"release_denied", "simulated"},
			check: func(t *testing.T, r *run) {
				if n := countAudit(r.audit, "attest", true); n != 1 {
					t.Errorf("audit: %d successful attestations, want 1\n%s", n, auditText(r.audit))
				}
				checkDenied(t, r, "release", "simulated")
			},
		},
		// No verifier for the whole retry budget.
		"verifier-down": {
			mode: verifierDown, wantStage: "attest", wantReason: []string{"retry budget exhausted"},
			check: func(t *testing.T, r *run) {
				for _, rec := range r.audit {
					if !strings.HasPrefix(rec.Event, "admin.") {
						t.Errorf("audit of a verifier that was down shows a guest's request:\n%s", auditText(r.audit))
						break
					}
				}
			},
		},
		// The verifier is down at boot and back within the retry budget.
		// The verifier is killed (SIGKILL) mid-appraisal and mid-release.
		"verifier-killed": killedScenario(),
		"verifier-late": {
			mode: verifierLate,
			check: func(t *testing.T, r *run) {
				if _, ok := r.res.Boot.FindAgent("attempt 1 failed"); !ok {
					t.Errorf("no failed first attempt on the console, so the verifier was not down at boot:\n%s", r.res.Boot.AgentText())
				}
				checkBooted(t, r)
			},
		},
	}

	// Each scenario is a subtest; they run concurrently (t.Run from
	// goroutines: not t.Parallel, whose limit is GOMAXPROCS), at most
	// maxGuests busy guests at a time.
	order := []string{"verifier-down", "boot", "tampered-uki", "secure-boot-off", "tampered-initramfs", "policy-forbids",
		"release-denied", "verifier-late", "verifier-killed"}
	for _, name := range order {
		if _, ok := scenarios[name]; !ok {
			t.Fatalf("scenario %q in order but not in the table", name)
		}
	}
	if len(order) != len(scenarios) {
		t.Fatalf("order lists %d scenarios, the table has %d", len(order), len(scenarios))
	}
	slots := make(chan struct{}, maxGuests)
	var wg sync.WaitGroup
	for i, name := range order {
		sc := scenarios[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the starts a little, so the guests queue in order.
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			t.Run(name, func(t *testing.T) {
				r := runScenario(ctx, t, lab, name, sc, slots)
				checkOutcome(t, sc, r)
				if sc.check != nil {
					sc.check(t, r)
				}
				if t.Failed() {
					t.Logf("console of %s:\n%s", name, r.res.Console)
					t.Logf("verifier log of %s:\n%s", name, r.world.Verifier.Log(8000))
				}
			})
		}()
	}
	wg.Wait()
}

// newLab builds everything once for all scenarios and cleans up after them.
func newLab(ctx context.Context, t *testing.T) *harness.Lab {
	t.Helper()
	repo, err := harness.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	// A short private directory: QEMU's and swtpm's unix sockets live below
	// it (108-byte limit), which t.TempDir's long names can exceed.
	dir, err := os.MkdirTemp("", "ce2e-")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lab, err := harness.NewLab(ctx, harness.LabOptions{Dir: dir, Repo: repo, Logf: t.Logf})
	t.Cleanup(func() {
		if lab != nil {
			if killed := lab.Close(); len(killed) > 0 {
				t.Errorf("processes left running at the end, killed: %s", strings.Join(killed, "; "))
			}
		} else if killed := harness.Sweep(dir); len(killed) > 0 {
			t.Errorf("processes left running at the end, killed: %s", strings.Join(killed, "; "))
		}
		if lab != nil {
			checkNoSecrets(t, lab)
		}
		if t.Failed() && os.Getenv("CONFIDANT_E2E_KEEP") != "" {
			t.Logf("kept %s (CONFIDANT_E2E_KEEP)", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	if err != nil {
		if errors.Is(err, harness.ErrMissingPrerequisite) {
			t.Fatalf("end-to-end tests cannot run: %v", err)
		}
		t.Fatal(err)
	}
	t.Logf("lab ready in %v (dir %s)", time.Since(start).Round(100*time.Millisecond), dir)
	return lab
}

// checkNoSecrets fails the test if any key, KEK, vTPM or signer key, or
// whole token appears in what the lab logged (verifier and hostd logs,
// audit exports, guest consoles).
func checkNoSecrets(t *testing.T, lab *harness.Lab) {
	t.Helper()
	scan, err := lab.ScanSecrets(nil)
	if err != nil {
		t.Errorf("secret scan: %v", err)
		return
	}
	for _, f := range scan.Findings {
		t.Errorf("secret in a log: %s", f)
	}
	t.Logf("secret scan: %d files, %d secrets, %d findings", len(scan.Scanned), len(scan.Secrets), len(scan.Findings))
}

// runScenario sets up the scenario's world, boots its guest and collects
// the console and the audit log.
func runScenario(ctx context.Context, t *testing.T, lab *harness.Lab, name string, sc scenario, slots chan struct{}) *run {
	t.Helper()
	newWorld := lab.NewWorld
	if sc.direct {
		newWorld = lab.NewDirectWorld
	}
	w, err := newWorld(name)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{world: w}
	t.Cleanup(func() {
		if err := w.Verifier.Stop(); err != nil {
			t.Logf("stopping verifier: %v", err)
		}
	})
	// The verifier runs while the image is built against it (the key is
	// registered, the reference values loaded) and the policies are set;
	// then it is stopped for the scenarios that need it down.
	w.Verifier.Config.ExtraArgs = sc.verifierArgs
	if err := w.StartVerifier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.BuildImage(ctx, true); err != nil {
		t.Fatal(err)
	}
	if sc.appraisal != nil {
		if err := w.Verifier.LoadPolicy(ctx, "sim-sev-snp", sc.appraisal(t, w)); err != nil {
			t.Fatal(err)
		}
	}
	if sc.release != "" {
		if err := w.Verifier.SetReleasePolicy(ctx, harness.KeyName, lab.ShippedReleasePolicy(sc.release)); err != nil {
			t.Fatal(err)
		}
	}
	if sc.releasePolicy != nil {
		if err := w.Verifier.SetReleasePolicy(ctx, harness.KeyName, sc.releasePolicy(t, w)); err != nil {
			t.Fatal(err)
		}
	}
	if sc.mode != verifierUp {
		if err := w.Verifier.Stop(); err != nil {
			t.Fatalf("stopping verifier: %v", err)
		}
	}

	bootFile := ""
	if sc.bootFile != nil {
		bootFile = sc.bootFile(t, r)
		t.Log(r.tamper)
	}
	spec, err := w.Guest("e2e-"+name, bootFile)
	if err != nil {
		t.Fatal(err)
	}
	var beforeStart func() error
	if sc.beforeStart != nil {
		beforeStart = func() error { return sc.beforeStart(t, r, spec.Name) }
	}

	var watch func(ctx context.Context, console string)
	lateErr := make(chan error, 1)
	if sc.mode == verifierLate {
		watch = func(ctx context.Context, console string) {
			if harness.WaitConsole(ctx, console, "attempt 1 failed", harness.AgentPrefix+"FAILED at ") == "" {
				lateErr <- nil
				return
			}
			lateErr <- w.StartVerifier(ctx)
		}
	}

	duringErr := make(chan error, 1)
	if sc.during != nil {
		watch = func(ctx context.Context, console string) { duringErr <- sc.during(ctx, t, w, console) }
	}

	// A guest whose verifier stays down idles through its retry budget
	// once booted: it takes no slot, so it does not hold the others up.
	busy := sc.mode != verifierDown
	if busy {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	res, err := lab.BootWith(ctx, w.Dir, spec, bootTimeout, harness.BootHooks{BeforeStart: beforeStart, Watch: watch})
	if busy {
		<-slots
	}
	if res != nil {
		r.res = res
		t.Logf("guest %s: %s after %v (%s)", spec.Name, res.Status.State, res.Took.Round(100*time.Millisecond), res.Status.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	if sc.during != nil {
		if err := <-duringErr; err != nil {
			t.Fatal(err)
		}
	}
	if sc.mode == verifierLate {
		select {
		case err := <-lateErr:
			if err != nil {
				t.Fatalf("starting the verifier late: %v", err)
			}
		default:
		}
	}

	// The audit log is read from a running verifier; the one that was
	// down all along is started now, so its log shows that nothing came.
	if !w.Verifier.Running() {
		if err := w.StartVerifier(ctx); err != nil {
			t.Fatal(err)
		}
	}
	audit, err := w.Verifier.Audit(ctx)
	if err != nil {
		t.Fatalf("reading audit log: %v", err)
	}
	r.audit = audit
	// The key was never printed, in any encoding.
	checkNoKey(t, w, res.Console)
	return r
}

// checkOutcome checks how the guest ended: powered off by itself, after
// the OS ran or after the agent's failure line at the wanted stage.
func checkOutcome(t *testing.T, sc scenario, r *run) {
	t.Helper()
	b := r.res.Boot
	if sc.wantFirmwareRefusal {
		checkFirmwareRefused(t, r)
		return
	}
	if r.res.Status.State != "stopped" || r.res.Status.Reason != "guest powered off" {
		t.Errorf("guest ended %s (%s), want stopped (guest powered off)", r.res.Status.State, r.res.Status.Reason)
	}
	if sc.wantStage == "" {
		if b.Failure != nil {
			t.Fatalf("agent failed at %s: %s\n%s", b.Failure.Stage, b.Failure.Reason, b.AgentText())
		}
		return
	}
	if b.Failure == nil {
		t.Fatalf("no \"confidant-agent: FAILED at %s\" line; agent said:\n%s", sc.wantStage, b.AgentText())
	}
	if b.Failure.Stage != sc.wantStage {
		t.Fatalf("agent FAILED at %s: %s; want FAILED at %s", b.Failure.Stage, b.Failure.Reason, sc.wantStage)
	}
	for _, s := range sc.wantReason {
		if !strings.Contains(b.Failure.Reason, s) {
			t.Errorf("failure reason %q does not mention %q", b.Failure.Reason, s)
		}
	}
	if b.Failure.Summary == nil || b.Failure.Summary.Action != "poweroff" {
		t.Errorf("failure summary %+v, want action poweroff", b.Failure.Summary)
	}
	if b.OSInitReached || len(b.CheckOrder) > 0 {
		t.Errorf("the OS ran after the agent failed (guestcheck lines %v)", b.CheckOrder)
	}
	if n := countAudit(r.audit, "release", true); n != 0 {
		t.Errorf("audit shows %d key releases, want none\n%s", n, auditText(r.audit))
	}
}

// checkBooted checks the guest attested, got its key once, opened its
// disks and ran the OS, from the console and the audit log.
func checkBooted(t *testing.T, r *run) {
	t.Helper()
	b := r.res.Boot
	// The agent's stages, in order, each with its line.
	prev := -1.0
	var jti string
	for _, want := range [][]string{
		{"attest: token jti="},
		{"release: key", "released", harness.KeyName},
		{"unlock: OS disk opened"},
		{"tempdisk: " + harness.TempDiskDevice, "formatted", "mounted on /mnt/resource"},
		{"switchroot: handing over to /sbin/init"},
	} {
		l, ok := b.FindAgent(want...)
		if !ok {
			t.Errorf("no agent line with %q:\n%s", want, b.AgentText())
			continue
		}
		if l.Uptime < prev {
			t.Errorf("agent line %q came before the stage it follows", l.Text)
		}
		prev = l.Uptime
		if rest, ok := strings.CutPrefix(l.Text, "attest: token jti="); ok {
			jti, _, _ = strings.Cut(rest, " ")
		}
	}
	if jti != "" && !slices.ContainsFunc(r.audit, func(rec harness.AuditRecord) bool {
		return isEvent(rec, "attest") && isSuccess(rec) && rec.TokenID == jti
	}) {
		t.Errorf("the audit log has no successful attestation for the guest's token jti=%s\n%s", jti, auditText(r.audit))
	}
	if !b.OSInitReached {
		t.Errorf("the demo OS's init did not finish (no %q line)", harness.OSInitReached)
	}
	if strings.Join(b.CheckOrder, ",") != "root,temp,dm,token,eventlog,summary" {
		t.Fatalf("guestcheck reports %v, want root,temp,dm,token,eventlog,summary (bad lines: %q)", b.CheckOrder, b.BadChecks)
	}
	var sum harness.SummaryCheck
	mustCheck(t, b, "summary", &sum)
	if !sum.OK || len(sum.Problems) != 0 {
		t.Errorf("guestcheck summary not ok: %q", sum.Problems)
	}

	var root, temp harness.MountCheck
	mustCheck(t, b, "root", &root)
	mustCheck(t, b, "temp", &temp)
	if !root.Mounted || !root.DMCrypt || root.DM == nil || root.FSType != "ext4" ||
		root.DM.Cipher != "aes-xts-plain64" || !strings.HasPrefix(root.DM.UUID, "CRYPT-LUKS2-") {
		t.Errorf("root is not the LUKS2 OS disk on dm-crypt: %s", b.Checks["root"])
	}
	if root.DM != nil && !strings.Contains(strings.ReplaceAll(root.DM.UUID, "-", ""), strings.ReplaceAll(r.world.Image.Manifest.LUKSUUID, "-", "")) {
		t.Errorf("root's dm UUID %q does not name the OS disk's LUKS UUID %s", root.DM.UUID, r.world.Image.Manifest.LUKSUUID)
	}
	if !temp.Mounted || temp.Mountpoint != "/mnt/resource" || !temp.DMCrypt || temp.DM == nil ||
		!strings.HasPrefix(temp.DM.UUID, "CRYPT-LUKS2-") || temp.ReadOnly || temp.Probe != "ok" {
		t.Errorf("temp disk is not a writable LUKS2 dm-crypt mount at /mnt/resource: %s", b.Checks["temp"])
	}

	var dm harness.DMCheck
	mustCheck(t, b, "dm", &dm)
	crypts := 0
	for _, d := range dm.Devices {
		for _, tg := range d.Targets {
			if tg.Type != "crypt" {
				continue
			}
			crypts++
			if tg.Key != "<redacted>" {
				t.Errorf("dm device %s: key field %q, want <redacted>", d.Name, tg.Key)
			}
		}
	}
	if crypts < 2 {
		t.Errorf("dm report shows %d crypt targets, want the OS and the temp disk: %s", crypts, b.Checks["dm"])
	}

	var tok harness.TokenCheck
	mustCheck(t, b, "token", &tok)
	if !tok.Present || tok.Claims == nil {
		t.Errorf("no token in the OS: %s", b.Checks["token"])
	} else {
		c := tok.Claims
		// The production path affirms; the development mode (SeaBIOS, no
		// Secure Boot) gets a warning.
		wantStatus := "affirming"
		if r.world.Direct {
			wantStatus = "warning"
		}
		if !strings.Contains(c.HWModel, "simulated") || c.Iss != r.world.Verifier.URL ||
			c.Status != wantStatus || !strings.HasPrefix(c.Sub, "sim-sev-snp:") {
			t.Errorf("token claims: %+v", *c)
		}
		// The sub names the image and this VM: the identity hostd gave it.
		if want := "sim-sev-snp:" + r.res.Status.Measurement + ":" + r.res.Status.HostData; len(r.res.Status.HostData) != 64 ||
			strings.Trim(r.res.Status.HostData, "0") == "" || c.Sub != want {
			t.Errorf("token sub %q, want %q (the guest's measurement and HOST_DATA)", c.Sub, want)
		}
	}

	// The temp disk on the host is LUKS2 (formatted in the guest), so the
	// host only ever holds ciphertext.
	checkLUKS(t, filepath.Join(r.world.Lab.Hostd.StateDir, "guests", r.res.Name, "temp.img"))

	// The verifier: attested once, released once, to this guest.
	if n := countAudit(r.audit, "attest", true); n != 1 {
		t.Errorf("audit: %d successful attestations, want 1\n%s", n, auditText(r.audit))
	}
	if n := countAudit(r.audit, "release", true); n != 1 {
		t.Errorf("audit: %d key releases, want exactly 1\n%s", n, auditText(r.audit))
	}
	for _, rec := range r.audit {
		if isEvent(rec, "release") && isSuccess(rec) && rec.KeyName != harness.KeyName {
			t.Errorf("audit: released key %q, want %q", rec.KeyName, harness.KeyName)
		}
	}
}

// checkDenied checks that the audit log has a denied record for event
// with a reason containing want (any reason when want is empty).
func checkDenied(t *testing.T, r *run, event, want string) {
	t.Helper()
	for _, rec := range r.audit {
		if !isEvent(rec, event) || isSuccess(rec) {
			continue
		}
		if want == "" {
			return
		}
		for _, reason := range rec.Reasons {
			if strings.Contains(reason, want) {
				return
			}
		}
	}
	t.Errorf("audit has no denied %s record with a reason containing %q:\n%s", event, want, auditText(r.audit))
}

// isEvent: the verifier's audit events are "attest", "release" and
// "admin.*".
func isEvent(rec harness.AuditRecord, event string) bool { return rec.Event == event }

// isSuccess: an attestation that issued a token has the verdict as its
// outcome (affirming or warning), a release "granted"; a failure has the
// API's error code.
func isSuccess(rec harness.AuditRecord) bool {
	switch rec.Outcome {
	case "affirming", "warning", "granted":
		return true
	}
	return false
}

func countAudit(recs []harness.AuditRecord, event string, success bool) int {
	n := 0
	for _, r := range recs {
		if isEvent(r, event) && isSuccess(r) == success {
			n++
		}
	}
	return n
}

func auditText(recs []harness.AuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  #%d %s %s key=%s sub=%s reasons=%q\n", r.ID, r.Event, r.Outcome, r.KeyName, r.Subject, r.Reasons)
	}
	if b.Len() == 0 {
		return "  (empty)\n"
	}
	return b.String()
}

func mustCheck(t *testing.T, b harness.Boot, name string, v any) {
	t.Helper()
	if err := b.Check(name, v); err != nil {
		t.Fatal(err)
	}
}

// checkLUKS checks that a file starts with a LUKS header.
func checkLUKS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("opening temp disk: %v", err)
		return
	}
	defer f.Close()
	magic := make([]byte, 6)
	if _, err := f.Read(magic); err != nil || string(magic) != "LUKS\xba\xbe" {
		t.Errorf("temp disk %s starts with %q, want the LUKS magic", path, magic)
	}
}

// checkNoKey fails if the disk key shows on the console in hex or base64.
func checkNoKey(t *testing.T, w *harness.World, console string) {
	t.Helper()
	key, err := os.ReadFile(w.Image.KeyFile)
	if err != nil {
		t.Errorf("reading disk key: %v", err)
		return
	}
	lc := strings.ToLower(console)
	for _, enc := range []string{hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if strings.Contains(lc, strings.ToLower(enc)) {
			t.Errorf("the disk key appears on the console (%d-character encoding)", len(enc))
		}
	}
}

// forbidMeasurement writes the world's shipped appraisal policy with one
// rule added: the image's measurement is revoked.
func forbidMeasurement(t *testing.T, w *harness.World) string {
	t.Helper()
	shipped, err := os.ReadFile(w.Policy())
	if err != nil {
		t.Fatal(err)
	}
	m, err := w.Image.Measurement(harness.GuestVCPUs)
	if err != nil {
		t.Fatal(err)
	}
	policy := string(shipped) + fmt.Sprintf(`
# Added by the end-to-end test: this image's measurement is revoked.
deny contains "measurement %[1]s is revoked" if input.tee.measurement == %[1]q
`, m)
	p := filepath.Join(w.Dir, "appraisal-revoked.rego")
	if err := os.WriteFile(p, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
