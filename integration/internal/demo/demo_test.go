package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
)

func TestStageOf(t *testing.T) {
	tests := map[string]struct{ line, want string }{
		"attest":      {"attest: token jti=x exp=y", "attest"},
		"release":     {"release: key released (32 bytes), name os-disk", "release"},
		"unlock":      {"unlock: OS disk opened (/dev/mapper/confidant-root)", "unlock"},
		"tempdisk":    {"tempdisk: /dev/vdb formatted", "tempdisk"},
		"switchroot":  {"switchroot: handing over to /sbin/init", "switch_root"},
		"early":       {"network up: lo, eth0 10.0.2.15/24", "boot"},
		"colon later": {"OS disk: /dev/vda (LUKS UUID x)", "boot"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := stageOf(tc.line); got != tc.want {
				t.Errorf("stageOf(%q) = %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}

// The narration keeps the lines that tell the story and drops the rest.
func TestAgentLineNarration(t *testing.T) {
	var out bytes.Buffer
	n := &narrator{w: &out, start: time.Now()}
	for _, l := range []string{
		"started as PID 1",
		"mounted filesystems: /proc /sys",
		"loaded 18 modules",
		"attest: token jti=J exp=E",
		"switchroot: stage times: mount=0.1s",
		"switchroot: handing over to /sbin/init",
	} {
		n.agentLine(harness.AgentLine{Uptime: 1.5, Text: l})
	}
	got := out.String()
	for _, want := range []string{"boot        guest   1.50s  started as PID 1", "attest      guest   1.50s  token jti=J", "switch_root guest   1.50s  handing over to /sbin/init"} {
		if !strings.Contains(got, want) {
			t.Errorf("narration lacks %q:\n%s", want, got)
		}
	}
	for _, absent := range []string{"mounted filesystems", "loaded 18 modules", "stage times"} {
		if strings.Contains(got, absent) {
			t.Errorf("narration has %q:\n%s", absent, got)
		}
	}
}

func TestDescribeMount(t *testing.T) {
	var m harness.MountCheck
	if got := describeMount(m); got != "not mounted" {
		t.Errorf("describeMount(unmounted) = %q", got)
	}
	m.Mounted, m.FSType, m.Source = true, "ext4", "/dev/vda"
	if got := describeMount(m); !strings.Contains(got, "NOT encrypted") {
		t.Errorf("a plain disk is described as %q", got)
	}
	m.DMCrypt = true
	if got := describeMount(m); strings.Contains(got, "NOT") || !strings.Contains(got, "encrypted") {
		t.Errorf("an encrypted disk is described as %q", got)
	}
}
