// Package console writes the agent's lines on the serial console: progress
// with the time since boot, and on failure one line saying what failed and
// a one-line JSON summary. Nothing else about a failure is printed, so no
// secret can leak through it as long as errors hold none (they never do).
package console

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts every line the console writes.
const Prefix = "confidant-agent: "

// maxReason bounds the failure reason printed.
const maxReason = 1000

// Console writes progress and failure lines. It is safe for concurrent use.
type Console struct {
	mu     sync.Mutex
	w      io.Writer
	uptime func() time.Duration
}

// New returns a Console writing to w, stamping lines with uptime (Uptime
// for the time since boot).
func New(w io.Writer, uptime func() time.Duration) *Console {
	return &Console{w: w, uptime: uptime}
}

// Uptime returns the time since the kernel booted (CLOCK_BOOTTIME), the
// clock the kernel's own log lines use; 0 if it cannot be read.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Stepf writes a progress line: "confidant-agent: [1.234s] message".
func (c *Console) Stepf(format string, args ...any) {
	c.line(fmt.Sprintf("[%.3fs] %s", c.uptime().Seconds(), oneLine(fmt.Sprintf(format, args...))))
}

// Failed writes the failure line: "confidant-agent: FAILED at STAGE: REASON".
// The reason is flattened to one line and shortened if long.
func (c *Console) Failed(stage string, err error) {
	c.line(fmt.Sprintf("FAILED at %s: %s", stage, Reason(err)))
}

// Summary is the structured record printed after a failure.
type Summary struct {
	// Stage names the stage that failed.
	Stage string `json:"failed_stage"`
	// Completed names the stages that succeeded, in order.
	Completed []string `json:"completed"`
	// Uptime is the time since boot, in seconds.
	Uptime float64 `json:"uptime_s"`
	// StageSeconds is how long the failed stage ran, in seconds.
	StageSeconds float64 `json:"stage_s"`
	// Action is what happens next: "poweroff" or "reboot".
	Action string `json:"action"`
	// DebugShell tells whether a debug shell runs before the action.
	DebugShell bool `json:"debug_shell"`
}

// Summary writes s as one JSON line: "confidant-agent: summary {...}".
func (c *Console) Summary(s Summary) {
	if s.Completed == nil {
		s.Completed = []string{}
	}
	if s.Uptime == 0 {
		s.Uptime = c.uptime().Seconds()
	}
	b, err := json.Marshal(s)
	if err != nil { // cannot happen: plain fields
		b = []byte(`{}`)
	}
	c.line("summary " + string(b))
}

// Linef writes a plain line with the prefix.
func (c *Console) Linef(format string, args ...any) {
	c.line(oneLine(fmt.Sprintf(format, args...)))
}

func (c *Console) line(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A console write error has nowhere to be reported.
	_, _ = io.WriteString(c.w, Prefix+s+"\n")
}

// Reason renders err as one printable line of at most 1000 bytes.
func Reason(err error) string {
	if err == nil {
		return "unknown error"
	}
	s := oneLine(err.Error())
	if len(s) > maxReason {
		s = s[:maxReason] + "…"
	}
	return s
}

// oneLine joins lines with "; " and replaces control characters.
func oneLine(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// LogWriter returns a writer for a slog text handler that prefixes every
// record with Prefix and "log: ", so log lines stand out on the console.
func LogWriter(w io.Writer) io.Writer { return prefixWriter{w: w} }

type prefixWriter struct{ w io.Writer }

// Write writes p (one slog record) after the prefix, in one write.
func (pw prefixWriter) Write(p []byte) (int, error) {
	if _, err := pw.w.Write(append([]byte(Prefix+"log: "), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// DropTime is a slog ReplaceAttr that removes the time: console lines are
// stamped with the uptime, and the guest's clock is not yet trustworthy.
func DropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
