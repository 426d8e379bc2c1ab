// Package demo is make demo: it runs the whole Confidant flow on this
// machine with the harness — programs built from source, a verifier, an
// image built and encrypted against it, a guest booted by hostd under the
// simulated TEE with UEFI Secure Boot — and narrates it from the agent's
// console lines, the guest's own report and the verifier's audit log. Two
// more guests show the attacks the production path stops: a modified UKI
// (the firmware refuses it) and a modified UKI booted with Secure Boot
// turned off by the host (attestation is denied).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

// Outcomes.
var (
	// ErrBootFailed: the guest did not boot its OS on the production path
	// (Secure Boot on, affirming, the predicted PCRs).
	ErrBootFailed = errors.New("the guest did not boot its OS with Secure Boot on and an affirming verdict")
	// ErrTamperNotRefused: the firmware started the modified UKI.
	ErrTamperNotRefused = errors.New("the firmware did not refuse the modified UKI")
	// ErrSecureBootOffNotDenied: the guest the host booted with Secure Boot
	// off was not refused at attest.
	ErrSecureBootOffNotDenied = errors.New("the guest booted with Secure Boot off was not refused at attest")
)

// Options configure Run.
type Options struct {
	// Repo is the repository root.
	Repo string
	// Bin is a directory with the four programs (make build's bin/); ""
	// builds them.
	Bin string
	// Keep leaves the temporary directory in place.
	Keep bool
	// Out receives the narration.
	Out io.Writer
	// GuestTimeout bounds each guest (default 3 minutes).
	GuestTimeout time.Duration
}

// Run runs the demo. It cleans up everything it started, also on error or
// cancellation.
func Run(ctx context.Context, o Options) (err error) {
	if o.GuestTimeout == 0 {
		o.GuestTimeout = 3 * time.Minute
	}
	n := &narrator{w: o.Out, start: time.Now()}
	dir, err := os.MkdirTemp("", "confidant-demo-")
	if err != nil {
		return fmt.Errorf("creating temporary directory: %w", err)
	}
	var lab *harness.Lab
	defer func() {
		if lab != nil {
			if killed := lab.Close(); len(killed) > 0 {
				n.say("cleanup", "killed leftover processes: %s", strings.Join(killed, "; "))
			}
		} else {
			harness.Sweep(dir)
		}
		if o.Keep {
			n.say("cleanup", "kept %s", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("removing %s: %w", dir, rerr)
		}
		n.say("cleanup", "stopped the verifier and confidant-hostd, removed %s", dir)
	}()

	n.head("Confidant demo: a confidential VM boots only after attestation")
	fmt.Fprintf(n.w, "Everything runs on this machine. No SEV-SNP/TDX hardware here, so confidant-hostd\n"+
		"plays the AMD secure processor (the SIMULATED TEE) and signs real-format SNP reports;\n"+
		"QEMU (TCG), OVMF with Secure Boot, swtpm, dm-crypt and every Confidant check are the real ones.\n")

	lab, err = startLab(ctx, n, o, dir)
	if err != nil {
		return err
	}
	w, meas, predicted, err := buildWorld(ctx, n, lab)
	if err != nil {
		return err
	}

	n.head("Part 1: boot the signed UKI with Secure Boot enforced")
	bootOK, audit, err := part1(ctx, n, lab, w, meas, predicted, o.GuestTimeout)
	if err != nil {
		return err
	}
	esp := filepath.Join(w.Dir, "esp-modified.img")
	what, err := harness.TamperESP(esp, w.Image.Path(w.Image.Manifest.ESP), w.Image.Path(w.Image.Manifest.UKI))
	if err != nil {
		return err
	}
	n.head("Part 2a: the host changes one byte of the signed UKI")
	n.say("tamper", "%s", what)
	refused, err := part2a(ctx, n, lab, w, esp, meas, o.GuestTimeout)
	if err != nil {
		return err
	}
	n.head("Part 2b: the host turns Secure Boot off in the guest's variable store and boots the changed UKI")
	denied, err := part2b(ctx, n, lab, w, esp, meas, len(audit), o.GuestTimeout)
	if err != nil {
		return err
	}
	n.summary(bootOK, refused, denied)
	return errors.Join(cond(!bootOK, ErrBootFailed), cond(!refused, ErrTamperNotRefused), cond(!denied, ErrSecureBootOffNotDenied))
}

// startLab builds or finds the programs and starts confidant-hostd.
func startLab(ctx context.Context, n *narrator, o Options, dir string) (*harness.Lab, error) {
	var bins harness.Binaries
	if o.Bin != "" {
		bins = harness.BinariesIn(o.Bin)
		n.say("build", "using the programs make build put in %s", o.Bin)
	} else {
		n.say("build", "building confidant-verifier, confidant-hostd, confidant-image, confidant-agent from source …")
	}
	lab, err := harness.NewLab(ctx, harness.LabOptions{Dir: dir, Repo: o.Repo, Bins: bins,
		Logf: n.labLog})
	if err != nil {
		return lab, err
	}
	n.say("build", "confidant-hostd running (state in %s); its simulated secure processor's root goes to the verifier", lab.Hostd.StateDir)
	n.say("build", "Secure Boot key and certificate made for this run (%s): the image builder's own PK/KEK/db, as in production", lab.SecureBoot.Cert)
	return lab, nil
}

// buildWorld starts the verifier, builds the image against it and says
// what the build made; it returns the world, the launch measurement and
// the predicted PCRs.
func buildWorld(ctx context.Context, n *narrator, lab *harness.Lab) (*harness.World, string, map[string][]string, error) {
	w, err := lab.NewWorld("demo")
	if err != nil {
		return nil, "", nil, err
	}
	if err := w.StartVerifier(ctx); err != nil {
		return nil, "", nil, err
	}
	n.say("verifier", "confidant-verifier serving %s: SQLite store, policy policies/appraisal/sim_production.rego", w.Verifier.URL)
	n.say("verifier", "(the SEV-SNP production policy, trusting only hostd's simulated root); no reference values yet")
	if err := w.BuildImage(ctx, false); err != nil {
		return nil, "", nil, err
	}
	im := w.Image
	meas, err := im.Measurement(harness.GuestVCPUs)
	if err != nil {
		return nil, "", nil, err
	}
	predicted, err := im.PredictedPCRs()
	if err != nil {
		return nil, "", nil, err
	}
	n.say("encrypt", "confidant-image build: OS disk encrypted into LUKS2 (UUID %s)", im.Manifest.LUKSUUID)
	n.say("encrypt", "signed UKI %s (kernel, initramfs with the agent, command line, os-release) on the ESP %s;", im.Manifest.UKI, im.Manifest.ESP)
	n.say("encrypt", "variable store template %s with the builder's certificate in PK, KEK and db", im.Manifest.UEFIVars)
	n.say("encrypt", "reference values, loaded into the verifier: launch measurement (OVMF, %d vCPU) %s,", harness.GuestVCPUs, short(meas))
	n.say("encrypt", "PCRs predicted from the build: 4 %s, 7 %s, 11 %s", first(predicted["4"]), first(predicted["7"]), first(predicted["11"]))
	n.say("encrypt", "disk key made by the verifier as %q, used once to encrypt, then zeroed: it exists only in the verifier", harness.KeyName)
	n.say("encrypt", "its release policy (%s) requires status affirming and this image's measurement", im.Manifest.ReleasePolicy)
	return w, meas, predicted, nil
}

// part1 boots the image as built and reports whether it reached its OS on
// the production path; it returns the audit log read after it.
func part1(ctx context.Context, n *narrator, lab *harness.Lab, w *harness.World, meas string, predicted map[string][]string, timeout time.Duration) (bool, []harness.AuditRecord, error) {
	spec, err := w.Guest("demo", "")
	if err != nil {
		return false, nil, err
	}
	n.say("boot", "confidant-hostd vm start demo (QEMU TCG, OVMF Secure Boot with the guest's own variable store, swtpm vTPM, temp disk %d MiB) …", harness.GuestTempDiskMiB)
	res, err := lab.Boot(ctx, w.Dir, spec, timeout, n.live(lab, spec.Name, meas))
	if err != nil {
		return false, nil, err
	}
	n.ending(res.Boot)
	n.guestReport(res.Boot)
	pcrsOK := n.pcrs(res.Boot, predicted)
	audit, aerr := w.Verifier.Audit(ctx)
	if aerr != nil {
		n.say("audit", "cannot read the audit log: %v", aerr)
	} else {
		n.audit(audit, 0)
	}
	n.say("boot", "guest %s after %v (%s)", res.Status.State, res.Took.Round(100*time.Millisecond), res.Status.Reason)
	var tok harness.TokenCheck
	affirmed := res.Boot.Check("token", &tok) == nil && tok.Claims != nil && tok.Claims.Status == "affirming" &&
		tok.Claims.SecBoot != nil && *tok.Claims.SecBoot
	return res.Boot.Failure == nil && res.Boot.OSInitReached && affirmed && pcrsOK, audit, nil
}

// part2a boots the changed UKI with Secure Boot on: the firmware refuses it.
func part2a(ctx context.Context, n *narrator, lab *harness.Lab, w *harness.World, esp, meas string, timeout time.Duration) (bool, error) {
	spec, err := w.Guest("demo-modified", esp)
	if err != nil {
		return false, err
	}
	n.say("boot", "confidant-hostd vm start demo-modified (the same image, the changed UKI on its ESP) …")
	res, err := lab.Boot(ctx, w.Dir, spec, timeout, n.live(lab, spec.Name, meas))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(res.Console, "\n") {
		if i := strings.Index(l, "BdsDxe: "); i >= 0 && (strings.Contains(l, "Access Denied") || strings.Contains(l, "No bootable option")) {
			n.say("firmware", "%s", clip(l[i:], 160))
		}
	}
	n.say("boot", "guest %s after %v (%s)", res.Status.State, res.Took.Round(100*time.Millisecond), res.Status.Reason)
	return res.Status.State == "failed" && strings.Contains(res.Status.Reason, "firmware refused") &&
		len(res.Boot.Agent) == 0 && !res.Boot.OSInitReached, nil
}

// part2b switches Secure Boot off in a new guest's variable store, as the
// host can, and boots the changed UKI: it runs, and attestation is denied.
func part2b(ctx context.Context, n *narrator, lab *harness.Lab, w *harness.World, esp, meas string, seen int, timeout time.Duration) (bool, error) {
	spec, err := w.Guest("demo-sb-off", esp)
	if err != nil {
		return false, err
	}
	vars := lab.Hostd.UEFIVarsPath(spec.Name)
	hooks := harness.BootHooks{
		BeforeStart: func() error {
			n.say("tamper", "SecureBootEnable=0 written into %s (the guest's variable store, a host file)", vars)
			return harness.SetSecureBoot(vars, false)
		},
		Watch: n.live(lab, spec.Name, meas),
	}
	n.say("boot", "confidant-hostd vm start demo-sb-off (the changed UKI, Secure Boot off) …")
	res, err := lab.BootWith(ctx, w.Dir, spec, timeout, hooks)
	if err != nil {
		return false, err
	}
	n.ending(res.Boot)
	if audit, aerr := w.Verifier.Audit(ctx); aerr != nil {
		n.say("audit", "cannot read the audit log: %v", aerr)
	} else {
		n.audit(audit, seen)
	}
	n.say("boot", "guest %s after %v (%s)", res.Status.State, res.Took.Round(100*time.Millisecond), res.Status.Reason)
	f := res.Boot.Failure
	return f != nil && f.Stage == "attest" && strings.Contains(f.Reason, "secure boot is not enabled") && !res.Boot.OSInitReached, nil
}

// summary says what the run showed.
func (n *narrator) summary(bootOK, refused, denied bool) {
	n.head("What you just saw")
	if bootOK {
		fmt.Fprint(n.w, `1. confidant-image had the verifier make the disk key, encrypted the demo OS into LUKS2
   with it, built and signed a Unified Kernel Image with the builder's Secure Boot key, and
   predicted the PCRs that firmware and stub measure (4: the UKI, 7: the Secure Boot
   configuration and the certificate that verified it, 11: the UKI's sections).
2. OVMF verified the UKI against the guest's own variable store and started it; the agent
   proved the simulated SNP report and the vTPM quote. The production policy affirmed:
   Secure Boot on, every pinned PCR as predicted, no debug. The verifier released the disk
   key wrapped to a key that lives only in that guest's vTPM.
3. The agent opened the OS disk, made a fresh LUKS2 temp disk, and switched to the OS.
`)
	} else {
		fmt.Fprintf(n.w, "1-3. The guest did NOT boot its OS on the production path: see the lines above.\n")
	}
	if refused {
		fmt.Fprint(n.w, "4. One changed byte in the signed UKI: the firmware refused to start it (Secure Boot).\n")
	} else {
		fmt.Fprint(n.w, "4. The changed UKI was NOT refused by the firmware: see above.\n")
	}
	if denied {
		fmt.Fprint(n.w, `5. With Secure Boot turned off by the host, the changed UKI started, but PCRs 4, 7 and 11
   no longer matched and Secure Boot was off: attestation was denied and no key left.
`)
	} else {
		fmt.Fprint(n.w, "5. The guest booted with Secure Boot off was NOT refused at attest: see above.\n")
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return "(none)"
	}
	return short(vs[0])
}

func cond(c bool, err error) error {
	if c {
		return err
	}
	return nil
}

func sameOrNot(a, b string) string {
	if a == b {
		return "equals"
	}
	return "DIFFERS from"
}

func short(hex string) string {
	if len(hex) > 24 {
		return hex[:16] + "…" + hex[len(hex)-8:]
	}
	return hex
}
