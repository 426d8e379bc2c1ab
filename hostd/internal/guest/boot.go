package guest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/capped"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
)

// Caps on what hostd reads into memory to copy and measure.
const (
	maxKernel   = 256 << 20
	maxInitrd   = 1 << 30
	maxFirmware = 64 << 20
)

type bootFiles struct {
	kernel, initrd, firmware string
	measurement              string // hex, empty when not computed
}

// prepareBoot reads the kernel, initrd and firmware once, writes the bytes
// into dir, and measures those same bytes; QEMU boots the copies, so the
// measurement is of exactly what was booted, whatever happens to the
// originals later. Each file is checked, as opened, to lie outside
// stateDir (a symlink may have been swapped since the spec was validated).
func prepareBoot(sp *spec.Spec, dir, stateDir string) (bootFiles, error) {
	if sp.SimUEFI() {
		return prepareUEFIBoot(sp, dir, stateDir)
	}
	var bf bootFiles
	kernel, err := readCapped(stateDir, sp.Image.Kernel, maxKernel)
	if err != nil {
		return bf, fmt.Errorf("reading image.kernel: %w", err)
	}
	initrd, err := readCapped(stateDir, sp.Image.Initrd, maxInitrd)
	if err != nil {
		return bf, fmt.Errorf("reading image.initrd: %w", err)
	}
	firmware, err := readCapped(stateDir, sp.Firmware.Path, maxFirmware)
	if err != nil {
		return bf, fmt.Errorf("reading firmware.path: %w", err)
	}
	bf.kernel = filepath.Join(dir, "kernel")
	bf.initrd = filepath.Join(dir, "initrd")
	bf.firmware = filepath.Join(dir, "firmware")
	for path, b := range map[string][]byte{bf.kernel: kernel, bf.initrd: initrd, bf.firmware: firmware} {
		if err := writeFileAtomic(path, b); err != nil {
			return bf, err
		}
	}
	params := snp.SNPParams{
		OVMF: firmware, Kernel: kernel, Initrd: initrd, Append: sp.Image.Cmdline,
		VCPUs: sp.VCPUs, VCPUType: sp.CPU,
	}
	switch {
	case sp.TEE == spec.TEESim:
		params.VCPUType = SimVCPUType
		d, err := snp.SimLaunchDigest(params)
		if err != nil {
			return bf, fmt.Errorf("computing simulated launch digest: %w", err)
		}
		bf.measurement = hex.EncodeToString(d[:])
	case sp.TEE == spec.TEESNP && sp.Firmware.Kind == spec.FirmwareOVMF:
		// The hardware measures; this is what it should report.
		if d, err := snp.SNPLaunchDigest(params); err == nil {
			bf.measurement = hex.EncodeToString(d[:])
		}
	}
	return bf, nil
}

// readCapped reads at most limit bytes of path, refusing a file that is in
// stateDir.
func readCapped(stateDir, path string, limit int64) ([]byte, error) {
	f, err := spec.OpenOutside(stateDir, path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return capped.Read(f, path, limit)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Base(path), errors.Unwrap(err))
	}
	return nil
}

// qemuConfig is the QEMU configuration of one launch of v: boot holds the
// copies of what it boots, tempDisk its temp disk ("" for none).
func (m *Manager) qemuConfig(v *vm, sp *spec.Spec, boot bootFiles, tempDisk string) qemu.Config {
	cfg := qemu.Config{
		Name:      sp.Name,
		TEE:       string(sp.TEE),
		VCPUs:     sp.VCPUs,
		MemoryMiB: sp.Memory.MiB(),
		CPU:       sp.CPU,
		Firmware:  boot.firmware,
		IGVM:      sp.Firmware.Kind == spec.FirmwareIGVM,
		Kernel:    boot.kernel,
		Initrd:    boot.initrd,
		Append:    sp.Image.Cmdline,
		OSDisk:    sp.Image.OSDisk,
		TempDisk:  tempDisk,
		QMPSocket: filepath.Join(v.dir, "qmp.sock"),
		SerialLog: filepath.Join(v.dir, "console.log"),
		SNP: qemu.SNPConfig{
			Policy: sp.SNP.Policy, CBitPos: sp.SNP.CBitPos, ReducedPhysBits: sp.SNP.ReducedPhysBits,
		},
		TDX: qemu.TDXConfig{QGSSocket: sp.TDX.QGSSocket},
	}
	switch sp.TEE {
	case spec.TEESNP:
		cfg.SNP.HostData = hostData(v.id, sp)
	case spec.TEETDX:
		cfg.TDX.MRConfigID = mrConfigID(v.id, sp)
	case spec.TEESim:
		// HOST_DATA goes into the simulated reports (signerFor).
		cfg.SPSocket = filepath.Join(v.dir, "sp.sock")
		cfg.Relay = m.opts.Relay
	}
	if sp.SimUEFI() {
		cfg.UEFI = true
		cfg.Kernel, cfg.Initrd, cfg.Append = "", "", ""
		cfg.UEFIVars = filepath.Join(v.dir, varStoreFile)
	}
	cfg.VerifierHost, cfg.VerifierPort, _ = spec.SplitVerifier(sp.Verifier)
	return cfg
}

// osDiskFDSet is the QEMU fd set that carries the OS disk.
const osDiskFDSet = 1

// openOSDisk opens the OS disk (read-write, and read-only through the same
// open file) after checking that it is not in stateDir, and points cfg at
// the fd set QEMU files them into (child fds 3 and 4, the order of the
// returned files, which the caller passes as ExtraFiles and closes).
func openOSDisk(stateDir, path string, cfg *qemu.Config) ([]*os.File, error) {
	if path == "" {
		return nil, nil
	}
	rw, err := spec.OpenOutside(stateDir, path, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("opening image.os_disk: %w", err)
	}
	ro, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", rw.Fd()))
	if err != nil {
		rw.Close()
		return nil, fmt.Errorf("opening image.os_disk read-only: %w", err)
	}
	cfg.OSDisk = fmt.Sprintf("/dev/fdset/%d", osDiskFDSet)
	cfg.AddFDs = []qemu.AddFD{
		{FD: 3, Set: osDiskFDSet, Opaque: "os-disk-rw"},
		{FD: 4, Set: osDiskFDSet, Opaque: "os-disk-ro"},
	}
	return []*os.File{rw, ro}, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
