package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

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
		if c.SecBoot != nil {
			fmt.Fprintf(n.w, "  secboot      %v\n", *c.SecBoot)
		}
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

// pcrs compares the PCRs the token carries (as the vTPM quoted them) with
// the ones confidant-image predicted, and reports whether all match.
func (n *narrator) pcrs(b harness.Boot, predicted map[string][]string) bool {
	var tok harness.TokenCheck
	if b.Check("token", &tok) != nil || tok.Claims == nil || tok.Claims.TPM == nil {
		n.say("pcrs", "no quoted PCRs in the guest's token")
		return false
	}
	ok := true
	for _, k := range []string{"4", "7", "11"} {
		q := tok.Claims.TPM.PCRs["sha256"][k]
		match := len(predicted[k]) == 1 && predicted[k][0] == q
		ok = ok && match
		verdict := "equals the predicted value"
		if !match {
			verdict = "DIFFERS from the predicted " + first(predicted[k])
		}
		n.say("pcrs", "PCR %-2s quoted by the vTPM %s: %s", k, short(q), verdict)
	}
	return ok
}
