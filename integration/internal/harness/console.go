package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Line prefixes on the guest's serial console.
const (
	AgentPrefix      = "confidant-agent: "
	GuestcheckPrefix = "guestcheck: "
	DemoPrefix       = "confidant-demo: "
	// OSInitReached is the demo OS's last line before it powers off.
	OSInitReached = "confidant-demo: OS init reached, powering off"
)

// AgentLine is one progress line of the agent: "confidant-agent: [1.234s] text".
type AgentLine struct {
	// Uptime is the guest's time since boot, in seconds.
	Uptime float64
	Text   string
}

// Failure is the agent's failure line, "confidant-agent: FAILED at STAGE:
// REASON", and the summary line after it.
type Failure struct {
	Stage   string
	Reason  string
	Summary *FailureSummary
}

// FailureSummary is the agent's "confidant-agent: summary {...}" line.
type FailureSummary struct {
	Stage        string   `json:"failed_stage"`
	Completed    []string `json:"completed"`
	Uptime       float64  `json:"uptime_s"`
	StageSeconds float64  `json:"stage_s"`
	Action       string   `json:"action"`
}

// Boot is what one boot printed on the console, as far as Confidant's
// programs are concerned.
type Boot struct {
	// Agent are the agent's progress lines, in order.
	Agent []AgentLine
	// Failure is set when the agent failed.
	Failure *Failure
	// Checks are guestcheck's reports by name (root, temp, dm, token,
	// eventlog, summary) and CheckOrder the order they came in.
	Checks     map[string]json.RawMessage
	CheckOrder []string
	// BadChecks are guestcheck lines that were not JSON.
	BadChecks []string
	// Demo are the demo OS's own lines (without the prefix).
	Demo []string
	// OSInitReached: the demo OS's init ran to its end.
	OSInitReached bool
}

var agentStep = regexp.MustCompile(`^\[([0-9]+\.[0-9]+)s\] (.*)$`)

// ParseConsole picks Confidant's lines out of a serial console log. Kernel
// messages may share a line with them, so prefixes are found anywhere.
func ParseConsole(log string) Boot {
	b := Boot{Checks: map[string]json.RawMessage{}}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, AgentPrefix); i >= 0 {
			b.agentLine(line[i+len(AgentPrefix):])
			continue
		}
		if i := strings.Index(line, GuestcheckPrefix); i >= 0 {
			js := line[i+len(GuestcheckPrefix):]
			var head struct {
				Check string `json:"check"`
			}
			if err := json.Unmarshal([]byte(js), &head); err != nil || head.Check == "" {
				b.BadChecks = append(b.BadChecks, js)
				continue
			}
			b.Checks[head.Check] = json.RawMessage(js)
			b.CheckOrder = append(b.CheckOrder, head.Check)
			continue
		}
		if i := strings.Index(line, DemoPrefix); i >= 0 {
			b.Demo = append(b.Demo, line[i+len(DemoPrefix):])
			if strings.Contains(line, OSInitReached) {
				b.OSInitReached = true
			}
		}
	}
	return b
}

func (b *Boot) agentLine(s string) {
	if m := agentStep.FindStringSubmatch(s); m != nil {
		up, _ := strconv.ParseFloat(m[1], 64)
		b.Agent = append(b.Agent, AgentLine{Uptime: up, Text: m[2]})
		return
	}
	if rest, ok := strings.CutPrefix(s, "FAILED at "); ok {
		stage, reason, _ := strings.Cut(rest, ": ")
		b.Failure = &Failure{Stage: stage, Reason: reason}
		return
	}
	if js, ok := strings.CutPrefix(s, "summary "); ok && b.Failure != nil {
		var sum FailureSummary
		if json.Unmarshal([]byte(js), &sum) == nil {
			b.Failure.Summary = &sum
		}
	}
}

// AgentText returns the agent's progress lines joined by newlines.
func (b Boot) AgentText() string {
	var s strings.Builder
	for _, l := range b.Agent {
		fmt.Fprintf(&s, "[%.3fs] %s\n", l.Uptime, l.Text)
	}
	return s.String()
}

// FindAgent returns the first progress line containing every one of the
// substrings.
func (b Boot) FindAgent(subs ...string) (AgentLine, bool) {
	for _, l := range b.Agent {
		all := true
		for _, s := range subs {
			if !strings.Contains(l.Text, s) {
				all = false
				break
			}
		}
		if all {
			return l, true
		}
	}
	return AgentLine{}, false
}

// Check decodes guestcheck's report name into v.
func (b Boot) Check(name string, v any) error {
	raw, ok := b.Checks[name]
	if !ok {
		return fmt.Errorf("no guestcheck %q line on the console", name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding guestcheck %q line: %w", name, err)
	}
	return nil
}

// MountCheck is guestcheck's root and temp report.
type MountCheck struct {
	Check       string `json:"check"`
	Mountpoint  string `json:"mountpoint"`
	Mounted     bool   `json:"mounted"`
	Source      string `json:"source"`
	FSType      string `json:"fstype"`
	ReadOnly    bool   `json:"read_only"`
	Device      string `json:"device"`
	DMCrypt     bool   `json:"dm_crypt"`
	SizeBytes   uint64 `json:"size_bytes"`
	FreeBytes   uint64 `json:"free_bytes"`
	DeviceBytes uint64 `json:"device_bytes"`
	Probe       string `json:"probe"`
	Error       string `json:"error"`
	DM          *struct {
		Name       string   `json:"name"`
		UUID       string   `json:"uuid"`
		Slaves     []string `json:"slaves"`
		Cipher     string   `json:"cipher"`
		KeyBytes   int      `json:"key_bytes"`
		SectorSize int      `json:"sector_size"`
	} `json:"dm"`
}

// DMCheck is guestcheck's dm report: every dm device and its table, keys
// redacted.
type DMCheck struct {
	Devices []struct {
		Dev     string   `json:"dev"`
		Name    string   `json:"name"`
		UUID    string   `json:"uuid"`
		Slaves  []string `json:"slaves"`
		Bytes   uint64   `json:"bytes"`
		Targets []struct {
			Type       string `json:"type"`
			Params     string `json:"params"`
			Cipher     string `json:"cipher"`
			Key        string `json:"key"`
			KeyKind    string `json:"key_kind"`
			KeyBytes   int    `json:"key_bytes"`
			SectorSize int    `json:"sector_size"`
		} `json:"targets"`
		TableError string `json:"table_error"`
	} `json:"devices"`
	Error string `json:"error"`
}

// TokenCheck is guestcheck's token report: the token the agent left in
// /run/confidant, decoded (not verified) by the guest.
type TokenCheck struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
	Mode    string `json:"mode"`
	Error   string `json:"error"`
	Claims  *struct {
		Iss        string          `json:"iss"`
		Sub        string          `json:"sub"`
		HWModel    string          `json:"hwmodel"`
		Status     string          `json:"status"`
		EATProfile string          `json:"eat_profile"`
		SecBoot    *bool           `json:"secboot"`
		Policy     json.RawMessage `json:"policy"`
		TPM        *struct {
			PCRs map[string]map[string]string `json:"pcrs"`
		} `json:"tpm"`
	} `json:"claims"`
}

// EventLogCheck is guestcheck's eventlog report: the firmware's TCG event
// log as the guest's kernel exposes it.
type EventLogCheck struct {
	Path  string `json:"path"`
	Size  int    `json:"size"`
	Log   []byte `json:"log"` // base64 in the JSON
	Error string `json:"error"`
}

// SummaryCheck is guestcheck's verdict.
type SummaryCheck struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}
