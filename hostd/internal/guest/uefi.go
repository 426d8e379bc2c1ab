package guest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
	"github.com/confidant-cvm/confidant/shared/uefi"
)

// varStoreFile is the guest's own UEFI variable store (ovmf guests), in
// its state directory beside the vTPM state (tpm/): copied from the
// image's template once, written only by the guest's firmware, kept across
// reboots and hostd restarts, removed with the guest.
const varStoreFile = "uefi-vars.fd"

// espFDSet is the QEMU fd set that carries the ESP.
const espFDSet = 2

// installVarStore copies the image's variable store template to dst unless
// dst exists already (it is never overwritten: the guest's firmware owns
// it). The template is read once, checked as opened to lie outside
// stateDir, and must be a plausible OVMF_VARS_4M store; the copy is
// written to a temporary file, synced and linked into place (mode 0600).
// It reports whether it made the copy; a refused template matches
// spec.ErrInvalid. The copy is not re-checked later: what the guest's
// firmware (or the host) writes into it shows in PCR 7, which attestation
// compares with the image's reference values.
func installVarStore(stateDir, template, dst string) (bool, error) {
	if _, err := os.Lstat(dst); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("checking the UEFI variable store: %w", err)
	}
	b, err := readCapped(stateDir, template, spec.OVMFVars4MSize)
	if err != nil {
		return false, fmt.Errorf("%w: reading image.uefi_vars: %w", spec.ErrInvalid, err)
	}
	if err := checkVarStore(b); err != nil {
		return false, fmt.Errorf("%w: image.uefi_vars %s: %v", spec.ErrInvalid, template, err)
	}
	tmp, err := writeTemp(dst, b)
	if err == nil {
		// A link, unlike a rename, never replaces an existing store.
		err = os.Link(tmp, dst)
		os.Remove(tmp)
	}
	if err != nil {
		return false, fmt.Errorf("writing the UEFI variable store: %w", err)
	}
	return true, nil
}

// checkVarStore refuses bytes that are not a variable store for the
// 4 MiB OVMF build, or one in which OVMF would not enforce Secure Boot (no
// PK enrolled, or SecureBootEnable off): an ovmf guest boots only what
// the image's enrolled certificates allow.
func checkVarStore(b []byte) error {
	if len(b) != spec.OVMFVars4MSize {
		return errors.New(spec.VarsSizeError(int64(len(b))))
	}
	vs, err := uefi.ParseVarStore(b)
	if err != nil {
		return err
	}
	if !vs.SecureBootEnabled() {
		return errors.New("the store does not enable Secure Boot (no PK enrolled, or SecureBootEnable off): enroll the image's certificates (confidant-image build does)")
	}
	return nil
}

// prepareUEFIBoot copies the OVMF code image into dir and measures the
// copy: the simulated launch digest of a UEFI guest covers the firmware
// and the vCPUs only (no kernel hashes: kernel, initrd and command line
// are inside the UKI, which Secure Boot verifies and the vTPM measures).
// confidant-image build computes the same value (measure.Compute with no
// kernel).
func prepareUEFIBoot(sp *spec.Spec, dir, stateDir string) (bootFiles, error) {
	var bf bootFiles
	firmware, err := readCapped(stateDir, sp.Firmware.Path, maxFirmware)
	if err != nil {
		return bf, fmt.Errorf("reading firmware.path: %w", err)
	}
	bf.firmware = filepath.Join(dir, "firmware")
	if err := writeFileAtomic(bf.firmware, firmware); err != nil {
		return bf, err
	}
	d, err := snp.SimLaunchDigest(snp.SNPParams{OVMF: firmware, VCPUs: sp.VCPUs, VCPUType: SimVCPUType})
	if err != nil {
		return bf, fmt.Errorf("computing simulated launch digest: %w", err)
	}
	bf.measurement = hex.EncodeToString(d[:])
	return bf, nil
}

// openESP opens the ESP read-only after checking that it is not in
// stateDir, and points cfg at the fd set it is filed into; the file
// becomes child fd 3+next (the caller appends it to ExtraFiles).
func openESP(stateDir, path string, cfg *qemu.Config, next int) (*os.File, error) {
	f, err := spec.OpenOutside(stateDir, path, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("opening image.esp: %w", err)
	}
	cfg.ESP = fmt.Sprintf("/dev/fdset/%d", espFDSet)
	cfg.AddFDs = append(cfg.AddFDs, qemu.AddFD{FD: 3 + next, Set: espFDSet, Opaque: "esp-ro"})
	return f, nil
}
