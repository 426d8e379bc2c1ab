// Package demo is make demo: it runs the whole Confidant flow on this
// machine with the harness — programs built from source, a verifier, an
// image built and encrypted against it, a guest booted by hostd under the
// simulated TEE — and narrates it from the agent's console lines, the
// guest's own report and the verifier's audit log. A second guest boots a
// tampered initramfs and is refused.
package demo

import (
	"context"
	"encoding/json"
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
	// ErrBootFailed: the untampered guest did not boot its OS.
	ErrBootFailed = errors.New("the guest did not boot its OS")
	// ErrTamperNotRefused: the tampered guest was not refused at attest.
	ErrTamperNotRefused = errors.New("the tampered guest was not refused at attest")
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
		"QEMU (TCG), swtpm, dm-crypt and every Confidant check are the real ones.\n")

	var bins harness.Binaries
	if o.Bin != "" {
		bins = harness.BinariesIn(o.Bin)
		n.say("build", "using the programs make build put in %s", o.Bin)
	} else {
		n.say("build", "building confidant-verifier, confidant-hostd, confidant-image, confidant-agent from source …")
	}
	lab, err = harness.NewLab(ctx, harness.LabOptions{Dir: dir, Repo: o.Repo, Bins: bins,
		Logf: n.labLog})
	if err != nil {
		return err
	}
	n.say("build", "confidant-hostd running (state in %s); its simulated secure processor's root goes to the verifier", lab.Hostd.StateDir)

	w, err := lab.NewWorld("demo")
	if err != nil {
		return err
	}
	if err := w.StartVerifier(ctx); err != nil {
		return err
	}
	n.say("verifier", "confidant-verifier serving %s: SQLite store, policy policies/appraisal/sim_development.rego,", w.Verifier.URL)
	n.say("verifier", "trusting only hostd's simulated root; no reference values yet")
	if err := w.BuildImage(ctx, false); err != nil {
		return err
	}
	im := w.Image
	meas, err := im.Measurement(harness.GuestVCPUs)
	if err != nil {
		return err
	}
	n.say("encrypt", "confidant-image build: OS disk encrypted into LUKS2 (UUID %s), initramfs with the agent as /init", im.Manifest.LUKSUUID)
	n.say("encrypt", "reference value (launch measurement, %d vCPU): %s, loaded into the verifier", harness.GuestVCPUs, short(meas))
	n.say("encrypt", "disk key made by the verifier as %q, used once to encrypt, then zeroed: it exists only in the verifier", harness.KeyName)
	n.say("encrypt", "its release policy (%s) admits only this image's measurement", im.Manifest.ReleasePolicy)

	// Part 1: the real boot.
	n.head("Part 1: boot the encrypted image")
	spec, err := w.Guest("demo", "")
	if err != nil {
		return err
	}
	n.say("boot", "confidant-hostd vm start demo (QEMU TCG, swtpm vTPM, temp disk %d MiB) …", harness.GuestTempDiskMiB)
	res, err := lab.Boot(ctx, w.Dir, spec, o.GuestTimeout, n.live(lab, spec.Name, meas))
	if err != nil {
		return err
	}
	n.ending(res.Boot)
	bootOK := res.Boot.Failure == nil && res.Boot.OSInitReached
	n.guestReport(res.Boot)
	audit, aerr := w.Verifier.Audit(ctx)
	if aerr != nil {
		n.say("audit", "cannot read the audit log: %v", aerr)
	} else {
		n.audit(audit, 0)
	}
	n.say("boot", "guest %s after %v (%s)", res.Status.State, res.Took.Round(100*time.Millisecond), res.Status.Reason)

	// Part 2: the host tampers with the initramfs.
	n.head("Part 2: the host changes one byte of the initramfs")
	tampered := filepath.Join(w.Dir, "initrd-tampered.img")
	what, err := harness.TamperInitramfs(tampered, im.Path(im.Manifest.Initrd))
	if err != nil {
		return err
	}
	n.say("tamper", "%s", what)
	spec2, err := w.Guest("demo-tampered", tampered)
	if err != nil {
		return err
	}
	n.say("boot", "confidant-hostd vm start demo-tampered (same image, the tampered initramfs) …")
	res2, err := lab.Boot(ctx, w.Dir, spec2, o.GuestTimeout, n.live(lab, spec2.Name, meas))
	if err != nil {
		return err
	}
	n.ending(res2.Boot)
	refused := res2.Boot.Failure != nil && res2.Boot.Failure.Stage == "attest" && !res2.Boot.OSInitReached
	seen := len(audit)
	audit2, aerr := w.Verifier.Audit(ctx)
	if aerr != nil {
		n.say("audit", "cannot read the audit log: %v", aerr)
	} else {
		n.audit(audit2, seen)
	}
	n.say("boot", "guest %s after %v (%s)", res2.Status.State, res2.Took.Round(100*time.Millisecond), res2.Status.Reason)

	n.head("What you just saw")
	if bootOK {
		fmt.Fprint(n.w, `1. confidant-image had the verifier make the disk key, encrypted the demo OS into LUKS2
   with it before it ever booted, and computed the launch measurement the verifier
   accepts; the key now exists only in the verifier, bound to that measurement.
2. The agent (PID 1 of the initramfs) proved the guest's simulated SNP report and its vTPM
   quote to the verifier and got a signed token; the verifier released the disk key
   wrapped to a key that lives only in that guest's vTPM.
3. The agent opened the OS disk, made a fresh LUKS2 temp disk, and switched to the OS; the
   OS itself confirmed that / and /mnt/resource are dm-crypt (keys redacted).
`)
	} else {
		fmt.Fprintf(n.w, "1-3. The guest did NOT boot its OS: see the agent's lines above.\n")
	}
	if refused {
		fmt.Fprint(n.w, `4. One changed byte in the initramfs changed the launch measurement: the verifier denied
   the evidence, no key was released, and the agent powered the guest off.
`)
	} else {
		fmt.Fprintf(n.w, "4. The tampered guest was NOT refused at attest: see above.\n")
	}
	return errors.Join(cond(!bootOK, ErrBootFailed), cond(!refused, ErrTamperNotRefused))
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

// narrator prints the progress lines.
type narrator struct {
	w     io.Writer
	start time.Time
}

func (n *narrator) head(s string) {
	fmt.Fprintf(n.w, "\n== %s\n", s)
}

// say prints "[  12.3s] label    text".
func (n *narrator) say(label, format string, args ...any) {
	fmt.Fprintf(n.w, "[%6.1fs] %-11s %s\n", time.Since(n.start).Seconds(), label, fmt.Sprintf(format, args...))
}

// labLog narrates the harness's own progress lines.
func (n *narrator) labLog(format string, args ...any) {
	label := "build"
	switch {
	case strings.Contains(format, "built and encrypted"):
		label = "encrypt"
	case strings.Contains(format, "verifier ready"):
		label = "verifier"
	}
	n.say(label, format, args...)
}

// stageOf names the boot stage an agent progress line belongs to.
func stageOf(text string) string {
	if word, _, ok := strings.Cut(text, ": "); ok {
		switch word {
		case "attest", "release", "unlock", "tempdisk":
			return word
		case "switchroot":
			return "switch_root"
		}
	}
	return "boot"
}

// live returns the watch function of a boot: it reports hostd's
// measurement against the reference value, then narrates the agent's
// lines as the guest prints them.
func (n *narrator) live(lab *harness.Lab, name, reference string) func(ctx context.Context, console string) {
	return func(ctx context.Context, console string) {
		if st, err := lab.Hostd.Show(ctx, name); err == nil && st.Measurement != "" {
			n.say("boot", "hostd measured the launch: %s (%s the reference value %s)", short(st.Measurement), sameOrNot(st.Measurement, reference), short(reference))
		}
		harness.TailLines(ctx, console, 0, func(line string) {
			b := harness.ParseConsole(line + "\n")
			for _, l := range b.Agent {
				n.agentLine(l)
			}
			if f := b.Failure; f != nil {
				n.say(f.Stage, "FAILED at %s: %s", f.Stage, clip(f.Reason, 400))
			}
		})
	}
}

// agentLine narrates one progress line of the agent: the early stages
// summarized, every line from attestation on.
func (n *narrator) agentLine(l harness.AgentLine) {
	st := stageOf(l.Text)
	if st == "boot" && !strings.HasPrefix(l.Text, "started as PID") && !strings.HasPrefix(l.Text, "OS disk:") &&
		!strings.HasPrefix(l.Text, "TEE interface:") && !strings.HasPrefix(l.Text, "network up:") {
		return
	}
	if strings.HasPrefix(l.Text, "switchroot: stage times") {
		return
	}
	text := strings.TrimPrefix(l.Text, st+": ")
	if st == "switch_root" {
		text = strings.TrimPrefix(l.Text, "switchroot: ")
	}
	n.say(st, "guest %6.2fs  %s", l.Uptime, clip(text, 150))
}

// ending narrates how the boot ended.
func (n *narrator) ending(b harness.Boot) {
	if f := b.Failure; f != nil && f.Summary != nil {
		n.say(f.Stage, "agent: %s after completing %s; the OS never ran", f.Summary.Action, strings.Join(f.Summary.Completed, ", "))
	}
	if b.OSInitReached {
		n.say("os", "the demo OS's /sbin/init ran (%s)", harness.OSInitReached)
	}
}

// guestReport prints the guest's own report of its disks and token.
func (n *narrator) guestReport(b harness.Boot) {
	if len(b.CheckOrder) == 0 {
		return
	}
	var root, temp harness.MountCheck
	if b.Check("root", &root) == nil {
		n.say("os", "guest reports /: %s", describeMount(root))
	}
	if b.Check("temp", &temp) == nil {
		n.say("os", "guest reports %s: %s", temp.Mountpoint, describeMount(temp))
	}
	var dm harness.DMCheck
	if b.Check("dm", &dm) == nil {
		for _, d := range dm.Devices {
			for _, t := range d.Targets {
				n.say("os", "dm table %s: %s %s key=%s (%d bytes) sector %d", d.Name, t.Type, t.Cipher, t.Key, t.KeyBytes, t.SectorSize)
			}
		}
	}
	var tok harness.TokenCheck
	if b.Check("token", &tok) == nil && tok.Claims != nil {
		c := tok.Claims
		fmt.Fprintf(n.w, "\nToken claims, decoded inside the guest from %s (mode %s):\n", tok.Path, tok.Mode)
		fmt.Fprintf(n.w, "  iss          %s\n  sub          %s\n  hwmodel      %s\n  status       %s\n  eat_profile  %s\n",
			c.Iss, c.Sub, c.HWModel, c.Status, c.EATProfile)
		if len(c.Policy) > 0 {
			var pol map[string]any
			if json.Unmarshal(c.Policy, &pol) == nil {
				fmt.Fprintf(n.w, "  policy       id=%v sha256=%.16v…\n", pol["id"], pol["sha256"])
			}
		}
		fmt.Fprintln(n.w)
	}
	var sum harness.SummaryCheck
	if b.Check("summary", &sum) == nil {
		if sum.OK {
			n.say("os", "guestcheck: ok (root and temp disk on dm-crypt, temp disk writable, no key material shown)")
		} else {
			n.say("os", "guestcheck: NOT ok: %s", strings.Join(sum.Problems, "; "))
		}
	}
}

func describeMount(m harness.MountCheck) string {
	if !m.Mounted {
		return "not mounted"
	}
	s := fmt.Sprintf("%s on %s", m.FSType, m.Source)
	if m.DM != nil {
		s += fmt.Sprintf(" = dm %s (%s, %d-bit key, %s)", m.DM.Name, m.DM.Cipher, m.DM.KeyBytes*8, m.DM.UUID)
	}
	if m.DMCrypt {
		s += ", encrypted"
	} else {
		s += ", NOT encrypted"
	}
	if m.SizeBytes > 0 {
		s += fmt.Sprintf(", %d MiB", m.SizeBytes>>20)
	}
	if m.Probe != "" {
		s += ", write probe " + m.Probe
	}
	return s
}

// audit prints the audit records after the first skip.
func (n *narrator) audit(recs []harness.AuditRecord, skip int) {
	if skip > len(recs) {
		skip = len(recs)
	}
	for _, r := range recs[skip:] {
		s := fmt.Sprintf("#%d %s: %s", r.ID, r.Event, r.Outcome)
		if r.KeyName != "" {
			s += " key=" + r.KeyName
		}
		if r.Subject != "" {
			s += " sub=" + short(r.Subject)
		}
		if r.TokenID != "" {
			s += " jti=" + r.TokenID
		}
		n.say("audit", "verifier %s", s)
		for _, reason := range r.Reasons {
			n.say("audit", "    reason: %s", clip(reason, 200))
		}
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
