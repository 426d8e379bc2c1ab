package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// State is a guest's lifecycle state.
type State string

// The states. A guest is created stopped.
const (
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateFailed   State = "failed"
)

// Status is what hostd knows about a guest beyond its spec. It is
// persisted in the guest's directory (status.json) at every change.
type Status struct {
	State State `json:"state"`
	// Reason says why the guest is in State (exit reason, failure, refusal).
	Reason string `json:"reason,omitempty"`
	// Simulated is true for sim guests: no hardware isolation.
	Simulated bool `json:"simulated"`
	// PID and PIDStart identify the QEMU process (PIDStart is the start time
	// from /proc/PID/stat, so a reused PID is not mistaken for it).
	PID      int    `json:"pid,omitempty"`
	PIDStart uint64 `json:"pid_start,omitempty"`
	// SwtpmPID is the guest's swtpm process, when it has one.
	SwtpmPID      int    `json:"swtpm_pid,omitempty"`
	SwtpmPIDStart uint64 `json:"swtpm_pid_start,omitempty"`
	// Measurement is the launch digest (hex) of what was booted: for sim
	// guests the MEASUREMENT their reports carry, for sev-snp guests the
	// value the hardware is expected to report. Empty for tdx.
	Measurement string `json:"measurement,omitempty"`
	// UEFIVars is the guest's own UEFI variable store (ovmf guests): made
	// at create from the image's template, kept across reboots and hostd
	// restarts, removed with the guest.
	UEFIVars string `json:"uefi_vars,omitempty"`
	// TempDiskPresent is false before the first start and after a
	// deallocation (the next start makes a blank one).
	TempDiskPresent bool      `json:"temp_disk_present"`
	Boots           int       `json:"boots"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	StoppedAt       time.Time `json:"stopped_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
}

// Guest is a guest's spec and status, as the API returns it.
type Guest struct {
	Name string `json:"name"`
	// Identity tells the guest apart from every other guest of its image:
	// its UUID and the HOST_DATA or MRCONFIGID it is launched with, which
	// end its token's sub.
	Identity Identity  `json:"identity"`
	Spec     spec.Spec `json:"spec"`
	Status   Status    `json:"status"`
}

const (
	specFile   = "spec.json"
	statusFile = "status.json"
)

// writeJSON writes v to path atomically (temporary file, fsync, rename).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	tmp, err := writeTemp(path, append(b, '\n'))
	if err == nil {
		if err = os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// writeTemp writes b to a new temporary file beside path, synced and with
// mode 0600, and returns its name: the caller renames or links it into
// place, and removes it.
func writeTemp(path string, b []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}
