package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
)

// eventLogPath is where the kernel exposes the firmware's TCG event log
// (securityfs, mounted by the agent's init or by this program).
const eventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// maxEventLog caps what is read: a UEFI boot's log is about 12 KB.
const maxEventLog = 1 << 20

// eventLogReport carries the firmware's event log so that the host can
// compare it, event by event, with the events confidant-image predicted.
// An event log is not secret: it holds digests and public certificates.
type eventLogReport struct {
	Check string `json:"check"`
	Path  string `json:"path"`
	Size  int    `json:"size"`
	// Log is the raw log, standard base64.
	Log   string `json:"log,omitempty"`
	Error string `json:"error,omitempty"`
}

func (c *checker) eventLogReport() eventLogReport {
	r := eventLogReport{Check: "eventlog", Path: eventLogPath}
	f, err := os.Open(c.path(eventLogPath))
	if err != nil {
		r.Error = fmt.Sprintf("opening the event log: %v", err)
		return r
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEventLog+1))
	switch {
	case err != nil:
		r.Error = fmt.Sprintf("reading the event log: %v", err)
	case len(b) > maxEventLog:
		r.Error = fmt.Sprintf("the event log is larger than %d bytes", maxEventLog)
	default:
		r.Size, r.Log = len(b), base64.StdEncoding.EncodeToString(b)
	}
	return r
}
