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
	// RefusalNoBootable: no boot option could be started.
	RefusalNoBootable = "firmware refused the boot image: no bootable option or device was found"
)

var refusalLines = []struct {
	text   []byte
	reason string
}{
	{[]byte("Access Denied"), RefusalAccessDenied},
	{[]byte("No bootable option or device was found"), RefusalNoBootable},
}

// handoverLines mark the kernel's EFI stub running: from there on the
// console belongs to the guest, whose output must not stop it.
var handoverLines = [][]byte{[]byte("EFI stub: "), []byte("Linux version ")}

// startMarker begins the line hostd writes to the console log before each
// launch; the firmware watch reads what follows the last one.
const startMarker = "=== confidant-hostd: starting guest "

// maxFirmwareOutput bounds what the watch reads of one boot's console.
const maxFirmwareOutput = 1 << 20

// scanFirmware judges the console output of one boot: the refusal reason
// when a refusal line comes before the kernel starts, or done when the
// kernel has started (nothing more to watch).
func scanFirmware(b []byte) (reason string, done bool) {
	first, firstReason := -1, ""
	for _, r := range refusalLines {
		if i := bytes.Index(b, r.text); i >= 0 && (first < 0 || i < first) {
			first, firstReason = i, r.reason
		}
	}
	for _, h := range handoverLines {
		if i := bytes.Index(b, h); i >= 0 && (first < 0 || i < first) {
			return "", true
		}
	}
	return firstReason, first >= 0
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

// watchFirmware follows an ovmf guest's console until its kernel starts:
// when the firmware refuses the boot image, it records the reason and
// kills QEMU (OVMF would wait forever), and finish marks the guest failed.
func (m *Manager) watchFirmware(ctx context.Context, r *runtime, console string, log *slog.Logger) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.exited:
			return
		case <-t.C:
		}
		b := bootOutput(console)
		reason, done := scanFirmware(b)
		if reason != "" {
			r.mu.Lock()
			stopping := r.stopping
			if !stopping {
				r.refusal = reason
			}
			r.mu.Unlock()
			if stopping {
				return
			}
			log.Warn("stopping guest: its firmware refused the boot image", "reason", reason)
			kill(r.pid, r.pidStart)
			return
		}
		if done || len(b) >= maxFirmwareOutput {
			return
		}
	}
}
