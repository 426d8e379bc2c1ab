package spec

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// Validate checks a resolved spec and reports every problem at once; the
// error matches ErrInvalid.
func (s *Spec) Validate(opts ValidateOptions) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !nameRE.MatchString(s.Name) {
		bad("name %q: want 1 to 32 of [a-z0-9-], starting and ending with a letter or digit", s.Name)
	}
	switch s.TEE {
	case TEESNP, TEETDX, TEESim:
	default:
		bad("tee %q: want sev-snp, tdx or sim", s.TEE)
	}
	if s.VCPUs < 1 || s.VCPUs > maxVCPUs {
		bad("vcpus %d: want 1 to %d", s.VCPUs, maxVCPUs)
	}
	if s.Memory < minMemory || s.Memory > maxMemory || s.Memory%(1<<20) != 0 {
		bad("memory %s: want whole MiB from 128MiB to 1TiB", s.Memory)
	}
	if s.TempDiskSize < 0 || s.TempDiskSize > maxTempDisk || s.TempDiskSize%(1<<20) != 0 {
		bad("temp_disk_size %s: want whole MiB up to 16TiB", s.TempDiskSize)
	}
	if _, _, err := SplitVerifier(s.Verifier); err != nil {
		bad("verifier: %v", err)
	}

	s.validateImage(bad, opts)
	s.validatePaths(bad, opts)
	s.validateTEE(bad, opts)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// validateImage checks what the guest boots.
func (s *Spec) validateImage(bad func(string, ...any), opts ValidateOptions) {
	if s.SimUEFI() {
		s.validateSimUEFI(bad, opts)
	} else {
		if s.Image.Kernel == "" {
			bad("image.kernel: missing (give it or a manifest)")
		}
		if s.Image.Initrd == "" {
			bad("image.initrd: missing (give it or a manifest)")
		}
		if s.Image.ESP != "" || s.Image.UEFIVars != "" {
			bad("image.esp, image.uefi_vars: only sim guests with firmware.kind ovmf boot from an ESP here (this guest boots the kernel directly)")
		}
	}
	if len(s.Image.Cmdline) > maxCmdline || !printable(s.Image.Cmdline) {
		bad("image.cmdline: want at most %d printable ASCII characters", maxCmdline)
	}
}

// validatePaths checks every path the spec names: absolute and clean,
// outside the state directory and (unless skipped) of the right kind.
func (s *Spec) validatePaths(bad func(string, ...any), opts ValidateOptions) {
	for _, p := range []struct {
		name, path string
		required   bool
	}{
		{"image.manifest", s.Image.Manifest, false},
		{"image.kernel", s.Image.Kernel, true},
		{"image.initrd", s.Image.Initrd, true},
		{"image.os_disk", s.Image.OSDisk, false},
		{"image.esp", s.Image.ESP, false},
		{"image.uefi_vars", s.Image.UEFIVars, false},
		{"firmware.path", s.Firmware.Path, false},
		{"tdx.qgs_socket", s.TDX.QGSSocket, false},
	} {
		if p.path == "" {
			continue
		}
		if err := checkPath(p.path); err != nil {
			bad("%s: %v", p.name, err)
			continue
		}
		if opts.StateDir != "" {
			if err := CheckOutside(opts.StateDir, p.path); err != nil {
				bad("%s: %w", p.name, err)
				continue
			}
		}
		if !opts.SkipFileChecks && p.name != "tdx.qgs_socket" {
			if err := checkFileKind(p.name, p.path); err != nil {
				bad("%s: %v", p.name, err)
			}
		}
	}
}

// validateTEE checks the firmware, the vTPM and the TEE-specific settings.
func (s *Spec) validateTEE(bad func(string, ...any), opts ValidateOptions) {
	switch s.Firmware.Kind {
	case FirmwareSeaBIOS, FirmwareOVMF, FirmwareIGVM:
	default:
		bad("firmware.kind %q: want seabios, ovmf or igvm", s.Firmware.Kind)
	}
	if !validCPU(s.CPU) {
		bad("cpu %q: want a QEMU CPU model name", s.CPU)
	}
	switch s.TEE {
	case TEESim:
		s.validateSim(bad)
	case TEESNP:
		s.validateSNPHost(bad, opts)
	case TEETDX:
		s.validateTDX(bad, opts)
	}
	if s.VTPM == VTPMSwtpm && s.TPMDevice != "tpm-crb" && s.TPMDevice != "tpm-tis" {
		bad("tpm_device %q: want tpm-crb or tpm-tis", s.TPMDevice)
	}
	if s.TEE == TEESNP || s.TEE == TEESim {
		p := s.SNP.Policy
		if p&snpPolicyReservedMBO == 0 {
			bad("snp.policy %#x: bit 16 must be set", p)
		}
		if p&snpPolicyDebug != 0 {
			bad("snp.policy %#x: debug (bit 19) lets the host read guest memory", p)
		}
		if p&snpPolicyMigrateMA != 0 {
			bad("snp.policy %#x: migration agent (bit 18) is not supported", p)
		}
		if p>>32 != 0 {
			bad("snp.policy %#x: reserved bits above 31 set", p)
		}
		if s.SNP.HostData != "" {
			if b, err := base64.StdEncoding.Strict().DecodeString(s.SNP.HostData); err != nil || len(b) != 32 {
				bad("snp.host_data: want 32 bytes in standard base64")
			}
		}
	}
	if s.TEE == TEESNP {
		if s.SNP.CBitPos < 32 || s.SNP.CBitPos > 63 {
			bad("snp.cbitpos %d: want 32 to 63", s.SNP.CBitPos)
		}
		if s.SNP.ReducedPhysBits < 1 || s.SNP.ReducedPhysBits > 63 {
			bad("snp.reduced_phys_bits %d: want 1 to 63", s.SNP.ReducedPhysBits)
		}
	}
}

// validateSim checks the firmware and vTPM of a sim guest.
func (s *Spec) validateSim(bad func(string, ...any)) {
	if s.Firmware.Kind != FirmwareOVMF && s.Firmware.Kind != FirmwareSeaBIOS {
		bad("firmware.kind %q: sim guests boot ovmf (Secure Boot) or, for development, seabios", s.Firmware.Kind)
	}
	if s.VTPM != VTPMSwtpm && s.VTPM != VTPMNone {
		bad("vtpm %q: sim guests use swtpm or none", s.VTPM)
	}
	if s.TDX != (TDX{}) {
		bad("tdx: only for tdx guests")
	}
}

// validateSNPHost checks the firmware and vTPM of a sev-snp guest.
func (s *Spec) validateSNPHost(bad func(string, ...any), opts ValidateOptions) {
	if s.Firmware.Kind == FirmwareSeaBIOS {
		bad("firmware.kind seabios: sev-snp guests need OVMF built for SEV (AmdSev) or an IGVM file")
	}
	if s.Firmware.Path == "" {
		bad("firmware.path: sev-snp guests need the path of an OVMF AmdSev build or IGVM file")
	}
	switch s.VTPM {
	case VTPMNone:
	case VTPMSVSM:
		if s.Firmware.Kind != FirmwareIGVM {
			bad("vtpm svsm: needs firmware.kind igvm (COCONUT-SVSM)")
		}
	case VTPMSwtpm:
		if !opts.AllowHostVTPM {
			bad("vtpm swtpm: a host-visible swtpm lets the host read and forge the vTPM of an isolated guest; use svsm")
		}
	default:
		bad("vtpm %q: want none, svsm or swtpm", s.VTPM)
	}
	if s.TDX != (TDX{}) {
		bad("tdx: only for tdx guests")
	}
}

// validateTDX checks the firmware and vTPM of a tdx guest.
func (s *Spec) validateTDX(bad func(string, ...any), opts ValidateOptions) {
	if s.Firmware.Kind != FirmwareOVMF {
		bad("firmware.kind %q: tdx guests need OVMF built for TDX", s.Firmware.Kind)
	}
	if s.Firmware.Path == "" {
		bad("firmware.path: tdx guests need the path of an OVMF TDX build")
	}
	switch s.VTPM {
	case VTPMNone:
	case VTPMSwtpm:
		if !opts.AllowHostVTPM {
			bad("vtpm swtpm: a host-visible swtpm lets the host read and forge the vTPM of an isolated guest")
		}
	default:
		bad("vtpm %q: tdx guests use none (RTMRs) here", s.VTPM)
	}
	if s.SNP != (SNP{}) {
		bad("snp: only for sev-snp and sim guests")
	}
}
