package console

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	c := New(&buf, func() time.Duration { return 1234567 * time.Microsecond })
	c.Stepf("mounted %s", "filesystems")
	c.Failed("devices", fmt.Errorf("finding OS disk: %w", errors.Join(errors.New("a\nb"), errors.New("c\x1b[2J"))))
	c.Summary(Summary{Stage: "devices", Completed: []string{"mount", "config"}, StageSeconds: 0.5, Action: "poweroff"})
	want := "confidant-agent: [1.235s] mounted filesystems\n" +
		"confidant-agent: FAILED at devices: finding OS disk: a; b; c?[2J\n" +
		`confidant-agent: summary {"failed_stage":"devices","completed":["mount","config"],"uptime_s":1.234567,"stage_s":0.5,"action":"poweroff","debug_shell":false}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestReason(t *testing.T) {
	if r := Reason(errors.New(strings.Repeat("x", 5000))); len(r) > maxReason+len("…") {
		t.Errorf("reason not shortened: %d bytes", len(r))
	}
	if Reason(nil) != "unknown error" {
		t.Error("nil error")
	}
}

func TestUptime(t *testing.T) {
	a := Uptime()
	time.Sleep(2 * time.Millisecond)
	if b := Uptime(); a <= 0 || b <= a {
		t.Errorf("uptime not increasing: %v then %v", a, b)
	}
}
