package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
)

// Firmware refusals: what OVMF's boot manager prints on the serial console
// when it will not start the boot image (then it waits forever), and the
// reason hostd records when it stops the guest for it.
const (
	// RefusalAccessDenied: Secure Boot verification failed (an unsigned,
	// wrongly signed or modified UKI, or one in dbx).
	RefusalAccessDenied = "firmware refused the boot image: Secure Boot verification failed (Access Denied)"
	// RefusalSecurityViolation: an image was loaded but Secure Boot
	// refused to start it.
	RefusalSecurityViolation = "firmware refused the boot image: Secure Boot verification failed (Security Violation)"
	// RefusalNoBootable: no boot option could be started.
	RefusalNoBootable = "firmware refused the boot image: no bootable option or device was found"
)

// refusalLines are the boot manager's messages (on a "BdsDxe: " line)
// that mean the boot image will not run; the first one seen decides.
var refusalLines = []struct {
	text   []byte
	reason string
}{
	{[]byte("Access Denied"), RefusalAccessDenied},
	{[]byte("Security Violation"), RefusalSecurityViolation},
	{[]byte("No bootable option or device was found"), RefusalNoBootable},
}

var (
	bdsPrefix   = []byte("BdsDxe: ")
	bdsStarting = []byte("BdsDxe: starting ")
)

// startMarker begins the line hostd writes to the console log before each
// launch; the firmware watch reads what follows the last one.
const startMarker = "=== confidant-hostd: starting guest "

// maxFirmwareOutput bounds what the watch reads of one boot's console.
const maxFirmwareOutput = 1 << 20

// DefaultFirmwareTimeout is how long an ovmf guest's firmware may take to
// start a boot image (Options.FirmwareTimeout); under TCG it takes 5 s.
const DefaultFirmwareTimeout = 5 * time.Minute

// RefusalTimeoutPrefix begins the reason of a guest whose firmware did not
// start a boot image in time (it hung or crashed).
const RefusalTimeoutPrefix = "firmware did not start a boot image within "

// scanFirmware judges the complete lines of one boot's console output. The
// firmware's boot manager prints "BdsDxe: " lines (after screen control
// sequences): a refusal among them gives the reason. Once it has started
// an image ("BdsDxe: starting ..."), any other output means the image runs
// (the kernel, its stub or the OS print it): done, and from there on the
// console belongs to the guest, whose output must not stop it.
func scanFirmware(b []byte) (reason string, done bool) {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return "", false // no complete line yet
	}
	started := false
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		i := bytes.Index(line, bdsPrefix)
		if i < 0 {
			if started && len(bytes.TrimSpace(line)) > 0 {
				return "", true
			}
			continue
		}
		line = line[i:]
		for _, r := range refusalLines {
			if bytes.Contains(line, r.text) {
				return r.reason, true
			}
		}
		if bytes.HasPrefix(line, bdsStarting) {
			started = true
		}
	}
	return "", false
}

// bootOutput returns the console log after the last start marker (at
// most maxFirmwareOutput bytes).
func bootOutput(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-2*maxFirmwareOutput, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	i := bytes.LastIndex(b, []byte(startMarker))
	if i < 0 {
		return nil
	}
	b = b[i:]
	if nl := bytes.IndexByte(b, '\n'); nl >= 0 {
		b = b[nl+1:]
	} else {
		b = nil
	}
	return b[:min(len(b), maxFirmwareOutput)]
}

// watchFirmware follows an ovmf guest's console until its boot image
// runs: when the firmware refuses the image (OVMF would then wait
// forever), or has not started one within the firmware timeout (it hung
// or crashed), it records the reason and kills QEMU, and finish marks the
// guest failed.
func (m *Manager) watchFirmware(ctx context.Context, r *runtime, console string, log *slog.Logger) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	deadline := time.NewTimer(m.opts.FirmwareTimeout)
	defer deadline.Stop()
	for {
		timedOut := false
		select {
		case <-ctx.Done():
			return
		case <-r.exited:
			return
		case <-deadline.C:
			timedOut = true
		case <-t.C:
		}
		b := bootOutput(console)
		reason, done := scanFirmware(b)
		if reason == "" && timedOut && !bytes.Contains(b, bdsStarting) {
			reason = RefusalTimeoutPrefix + m.opts.FirmwareTimeout.String()
		}
		if reason != "" {
			m.stopRefused(r, reason, log)
			return
		}
		if done || timedOut || len(b) >= maxFirmwareOutput {
			return
		}
	}
}

// stopRefused records why the firmware did not boot and kills QEMU,
// unless a stop was requested meanwhile (then that decides).
func (m *Manager) stopRefused(r *runtime, reason string, log *slog.Logger) {
	r.mu.Lock()
	stopping := r.stopping
	if !stopping {
		r.refusal = reason
	}
	r.mu.Unlock()
	if stopping {
		return
	}
	log.Warn("stopping guest: its firmware did not boot", "reason", reason)
	kill(r.pid, r.pidStart)
}
