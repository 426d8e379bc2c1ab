// Package vtpm opens the guest's vTPM and makes in it the two keys the
// agent attests with: the attestation key (AK), which quotes the PCRs, and
// a fresh runtime key, to which the verifier wraps released keys. Both are
// transient objects of shared/tpm; through the kernel's resource manager
// (/dev/tpmrm0) they live as long as the open file, so closing the Device
// removes them.
//
// Both keys are noDA, so a vTPM in dictionary-attack lockout (after unclean
// shutdowns of a guest whose older agent used DA-protected keys) still makes
// them and quotes and decrypts with them. Should the vTPM ever answer
// TPM_RC_LOCKOUT all the same, the error says so and names the remedy
// (ErrLockout).
package vtpm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/confidant-cvm/confidant/shared/tpm"
)

// DefaultPath is the kernel's TPM resource manager device.
const DefaultPath = "/dev/tpmrm0"

// ErrNoTPM: the TPM device did not appear in time.
var ErrNoTPM = errors.New("no TPM device")

// Device is an open vTPM with the AK and the runtime key in it. It is not
// safe for concurrent use.
type Device struct {
	rw io.ReadWriteCloser
	// AK quotes the PCRs (vclient.TPMAttester).
	AK AK
	// RuntimeKey is the fresh runtime key (vclient.RuntimeKey).
	RuntimeKey RuntimeKey
}

// Open waits up to wait for the TPM device at path (DefaultPath when ""),
// opens it read-write and makes the AK and a fresh runtime key in it. The
// TPM device node appears with the TPM driver, normally long before the
// agent looks; wait bounds how long a slow driver is given.
func Open(ctx context.Context, path string, wait time.Duration) (*Device, error) {
	if path == "" {
		path = DefaultPath
	}
	f, err := openWait(ctx, path, wait)
	if err != nil {
		return nil, err
	}
	d, err := New(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TPM %s: %w", path, err)
	}
	return d, nil
}

func openWait(ctx context.Context, path string, wait time.Duration) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening TPM: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening TPM: %w (waited %v): %w", ErrNoTPM, wait, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// New makes the AK and a fresh runtime key in the TPM behind rw (a TPM
// simulator in tests). The Device owns rw: Close closes it.
func New(rw io.ReadWriteCloser) (*Device, error) {
	ak, err := tpm.NewAttester(rw)
	if err != nil {
		return nil, explain(err)
	}
	rk, err := tpm.NewDecryptionKey(rw)
	if err != nil {
		ak.Close()
		return nil, explain(err)
	}
	return &Device{rw: rw, AK: AK{ak}, RuntimeKey: RuntimeKey{rk}}, nil
}

// Close flushes both keys and closes the TPM.
func (d *Device) Close() error {
	d.RuntimeKey.Close()
	d.AK.Close()
	return d.rw.Close()
}
