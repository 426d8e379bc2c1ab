package harness

import (
	"slices"
	"strings"
	"testing"
)

const bootedLog = `=== confidant-hostd: starting guest demo ===
[    1.696685] Run /init as init process
confidant-agent: [1.878s] started as PID 1
confidant-agent: [7.158s] attest: vTPM ready (attestation key and a fresh runtime key created)
confidant-agent: [17.273s] attest: challenge: attempt 1 failed: TLS handshake timeout; retrying in 335ms
confidant-agent: log: level=INFO msg="token received" subsystem=vclient
confidant-agent: [18.864s] attest: token jti=4f1U exp=2026-11-26T23:33:24Z
confidant-agent: [18.935s] release: key "os-disk" released (32 bytes)
[   19.1] random kernel line confidant-agent: [19.000s] unlock: OS disk opened (/dev/mapper/confidant-root), mounted on /sysroot
confidant-agent: [19.200s] switchroot: handing over to /sbin/init
confidant-demo: confidant-demo up, kernel 6.1.0
guestcheck: {"check":"root","mountpoint":"/","mounted":true,"fstype":"ext4","dm_crypt":true,"dm":{"name":"confidant-root","cipher":"aes-xts-plain64","key_bytes":64}}
guestcheck: {"check":"temp","mountpoint":"/mnt/resource","mounted":true,"dm_crypt":true,"probe":"ok"}
guestcheck: {"check":"dm","devices":[{"name":"confidant-root","targets":[{"type":"crypt","key":"<redacted>"}]}]}
guestcheck: {"check":"token","present":true,"claims":{"iss":"https://127.0.0.1:1","hwmodel":"sim"}}
guestcheck: not json
guestcheck: {"check":"summary","ok":true,"problems":[]}
confidant-demo: OS init reached, powering off
`

const failedLog = `confidant-agent: [1.878s] started as PID 1
confidant-agent: [16.595s] attest: attempt 2 failed: verifier denied the evidence: 403 evidence_denied: measurement ab is not in the reference set; giving up
confidant-agent: FAILED at attest: attesting: verifier denied the evidence: POST /v1/attest: 403 evidence_denied: measurement ab is not in the reference set
confidant-agent: [16.700s] stage times: mount=0.086s
confidant-agent: summary {"failed_stage":"attest","completed":["mount","config"],"uptime_s":16.7,"stage_s":9.5,"action":"poweroff","debug_shell":false}
[   16.8] reboot: Power down
`

func TestParseConsoleBooted(t *testing.T) {
	b := ParseConsole(bootedLog)
	if b.Failure != nil {
		t.Errorf("Failure = %+v, want none", b.Failure)
	}
	if !b.OSInitReached {
		t.Error("OSInitReached = false")
	}
	if want := []string{"root", "temp", "dm", "token", "summary"}; !slices.Equal(b.CheckOrder, want) {
		t.Errorf("CheckOrder = %v, want %v", b.CheckOrder, want)
	}
	if len(b.BadChecks) != 1 || b.BadChecks[0] != "not json" {
		t.Errorf("BadChecks = %q", b.BadChecks)
	}
	if len(b.Agent) != 7 {
		t.Errorf("%d agent lines, want 7 (log lines are not progress):\n%s", len(b.Agent), b.AgentText())
	}
	l, ok := b.FindAgent("unlock:", "opened")
	if !ok || l.Uptime != 19.0 {
		t.Errorf("unlock line = %+v, %v; want the one after a kernel message on the same line", l, ok)
	}
	var root MountCheck
	if err := b.Check("root", &root); err != nil || !root.DMCrypt || root.DM == nil || root.DM.KeyBytes != 64 {
		t.Errorf("root check = %+v, %v", root, err)
	}
	var sum SummaryCheck
	if err := b.Check("summary", &sum); err != nil || !sum.OK {
		t.Errorf("summary = %+v, %v", sum, err)
	}
	if err := b.Check("absent", &sum); err == nil {
		t.Error("Check of a missing report succeeded")
	}
	if len(b.Demo) != 2 {
		t.Errorf("Demo = %q", b.Demo)
	}
}

func TestParseConsoleFailed(t *testing.T) {
	b := ParseConsole(failedLog)
	f := b.Failure
	if f == nil {
		t.Fatal("no failure parsed")
	}
	if f.Stage != "attest" || !strings.HasPrefix(f.Reason, "attesting: verifier denied") {
		t.Errorf("failure = %q: %q", f.Stage, f.Reason)
	}
	if f.Summary == nil || f.Summary.Action != "poweroff" || !slices.Equal(f.Summary.Completed, []string{"mount", "config"}) {
		t.Errorf("summary = %+v", f.Summary)
	}
	if b.OSInitReached || len(b.CheckOrder) != 0 {
		t.Errorf("OS lines parsed from a failed boot: %v %v", b.OSInitReached, b.CheckOrder)
	}
	if _, ok := b.FindAgent("attempt 2 failed", "reference set"); !ok {
		t.Error("attempt line not found")
	}
	if _, ok := b.FindAgent("attempt 3"); ok {
		t.Error("FindAgent found a line that is not there")
	}
}

// A summary line without a failure line before it is not a failure.
func TestParseConsoleSummaryAlone(t *testing.T) {
	b := ParseConsole(`confidant-agent: summary {"failed_stage":"attest"}` + "\n")
	if b.Failure != nil {
		t.Errorf("Failure = %+v from a summary line alone", b.Failure)
	}
}

func FuzzParseConsole(f *testing.F) {
	f.Add(bootedLog)
	f.Add(failedLog)
	f.Add("confidant-agent: FAILED at \nconfidant-agent: summary {\nguestcheck: {\"check\":1}\n")
	f.Fuzz(func(t *testing.T, log string) {
		b := ParseConsole(log)
		_ = b.AgentText()
		for name := range b.Checks {
			var v SummaryCheck
			_ = b.Check(name, &v)
		}
	})
}
