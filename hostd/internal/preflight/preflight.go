// Package preflight checks, before a sev-snp or tdx guest starts, that the
// host can really isolate it: KVM module parameters, device nodes, firmware
// and QEMU version. It refuses with every reason at once. Simulated guests
// always pass.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/confidant-cvm/confidant/hostd/internal/qemu"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
)

// ErrIsolationUnavailable means the host cannot run the guest with the
// isolation its spec asks for.
var ErrIsolationUnavailable = errors.New("hardware isolation not available on this host")

// Minimum QEMU releases (see hostd/README.md).
var (
	minSNP     = qemu.Version{Major: 9, Minor: 1}
	minSNPIGVM = qemu.Version{Major: 10, Minor: 0}
	minTDX     = qemu.Version{Major: 10, Minor: 1}
)

// maxFirmware bounds the firmware image read for inspection.
const maxFirmware = 64 << 20

// Host is what the checks look at.
type Host struct {
	// Root is the host's file system rooted at "/" (os.DirFS("/")); paths
	// are looked up without the leading slash.
	Root fs.FS
	// QEMUVersion returns the version of the QEMU binary hostd runs.
	QEMUVersion func(ctx context.Context) (qemu.Version, error)
}

// Check returns nil when s can start on h, or an error matching
// ErrIsolationUnavailable that lists every missing piece.
func Check(ctx context.Context, h Host, s *spec.Spec) error {
	var problems []string
	add := func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }
	switch s.TEE {
	case spec.TEESim:
		return nil
	case spec.TEESNP:
		if !paramOn(h.Root, "sys/module/kvm_amd/parameters/sev_snp") {
			add("SEV-SNP is not enabled in KVM (/sys/module/kvm_amd/parameters/sev_snp is not Y; needs an SNP-capable CPU, firmware and kvm_amd sev_snp=1)")
		}
		if !exists(h.Root, "dev/sev") {
			add("/dev/sev is missing (no AMD secure processor driver ccp)")
		}
		if !exists(h.Root, "dev/kvm") {
			add("/dev/kvm is missing")
		}
		min := minSNP
		if s.Firmware.Kind == spec.FirmwareIGVM {
			min = minSNPIGVM
		}
		checkQEMU(ctx, h, min, add)
		checkSNPFirmware(h.Root, s, add)
	case spec.TEETDX:
		if !paramOn(h.Root, "sys/module/kvm_intel/parameters/tdx") {
			add("TDX is not enabled in KVM (/sys/module/kvm_intel/parameters/tdx is not Y)")
		}
		if !exists(h.Root, "dev/kvm") {
			add("/dev/kvm is missing")
		}
		checkQEMU(ctx, h, minTDX, add)
		if !regular(h.Root, s.Firmware.Path) {
			add("firmware %s is not a readable file (an OVMF IntelTdx build is needed)", s.Firmware.Path)
		}
		if st, err := fs.Stat(h.Root, rel(s.TDX.QGSSocket)); err != nil || st.Mode()&fs.ModeSocket == 0 {
			add("no Quote Generation Service socket at %s (the guest could not get quotes)", s.TDX.QGSSocket)
		}
	default:
		add("unknown TEE %q", s.TEE)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w for %s guest %q: %s", ErrIsolationUnavailable, s.TEE, s.Name, strings.Join(problems, "; "))
}

func checkQEMU(ctx context.Context, h Host, min qemu.Version, add func(string, ...any)) {
	if h.QEMUVersion == nil {
		add("QEMU version unknown")
		return
	}
	v, err := h.QEMUVersion(ctx)
	switch {
	case err != nil:
		add("QEMU version unknown: %v", err)
	case !v.AtLeast(min.Major, min.Minor):
		add("QEMU %s is too old (need ≥ %d.%d)", v, min.Major, min.Minor)
	}
}

func checkSNPFirmware(root fs.FS, s *spec.Spec, add func(string, ...any)) {
	if !regular(root, s.Firmware.Path) {
		add("firmware %s is not a readable file", s.Firmware.Path)
		return
	}
	if s.Firmware.Kind != spec.FirmwareOVMF {
		return // IGVM files are checked by QEMU
	}
	b, err := readCapped(root, s.Firmware.Path)
	if err != nil {
		add("reading firmware %s: %v", s.Firmware.Path, err)
		return
	}
	o, err := snp.ParseOVMF(b)
	if err != nil {
		add("firmware %s is not an OVMF build with SEV metadata: %v", s.Firmware.Path, err)
		return
	}
	if !o.HasSection(snp.SectionSNPKernelHashes) {
		add("firmware %s has no SNP_KERNEL_HASHES section (kernel-hashes=on needs the OVMF AmdSev build)", s.Firmware.Path)
	}
}

func readCapped(root fs.FS, path string) ([]byte, error) {
	st, err := fs.Stat(root, rel(path))
	if err != nil {
		return nil, err
	}
	if st.Size() > maxFirmware {
		return nil, fmt.Errorf("larger than %d bytes", maxFirmware)
	}
	return fs.ReadFile(root, rel(path))
}

func rel(p string) string { return strings.TrimPrefix(p, "/") }

func paramOn(root fs.FS, path string) bool {
	b, err := fs.ReadFile(root, path)
	if err != nil {
		return false
	}
	v := strings.TrimSpace(string(b))
	return v == "Y" || v == "1"
}

func exists(root fs.FS, path string) bool {
	_, err := fs.Stat(root, path)
	return err == nil
}

func regular(root fs.FS, path string) bool {
	if path == "" {
		return false
	}
	st, err := fs.Stat(root, rel(path))
	return err == nil && st.Mode().IsRegular()
}
