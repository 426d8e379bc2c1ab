// Package spec defines a guest: the YAML document an operator writes
// (`confidant-hostd vm create -f spec.yaml`), its strict parsing, the image
// manifest written by `confidant-image build`, and validation that reports
// every problem at once.
package spec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
)

// Sentinel errors.
var (
	// ErrInvalid means a spec or manifest is malformed or fails validation.
	ErrInvalid = errors.New("invalid guest spec")
)

// TEE is the isolation technology a guest runs under.
type TEE string

// The TEE kinds.
const (
	TEESNP TEE = "sev-snp"
	TEETDX TEE = "tdx"
	TEESim TEE = "sim"
)

// Simulated reports whether the TEE is the simulated one.
func (t TEE) Simulated() bool { return t == TEESim }

// FirmwareKind names the guest firmware.
type FirmwareKind string

// The firmware kinds.
const (
	// FirmwareSeaBIOS is QEMU's legacy BIOS: direct kernel boot, no
	// Secure Boot. For sim guests only, and only when the spec asks for
	// it (the fast development mode).
	FirmwareSeaBIOS FirmwareKind = "seabios"
	// FirmwareOVMF is an OVMF build: for sim guests (the default) the SMM
	// Secure Boot build booting the signed UKI from the image's ESP; for
	// sev-snp AmdSev (with the kernel hashes table); for tdx IntelTdx.
	FirmwareOVMF FirmwareKind = "ovmf"
	// FirmwareIGVM is an IGVM file bundling COCONUT-SVSM and OVMF, for
	// sev-snp guests with the SVSM vTPM.
	FirmwareIGVM FirmwareKind = "igvm"
)

// VTPM names where the guest's vTPM lives.
type VTPM string

// The vTPM kinds.
const (
	// VTPMSwtpm is a per-guest swtpm on the host (sim guests only, unless
	// the daemon runs with host-visible vTPMs allowed for development).
	VTPMSwtpm VTPM = "swtpm"
	// VTPMSVSM is the vTPM in COCONUT-SVSM at VMPL0 (sev-snp with IGVM).
	VTPMSVSM VTPM = "svsm"
	// VTPMNone means no vTPM.
	VTPMNone VTPM = "none"
)

// DefaultSeaBIOS is the SeaBIOS image Debian's QEMU uses for q35.
const DefaultSeaBIOS = "/usr/share/seabios/bios-256k.bin"

// Default SEV-SNP values (QEMU docs/system/i386/amd-memory-encryption.rst).
const (
	// DefaultSNPPolicy: bit 16 (reserved, must be one) and bit 17 (SMT
	// allowed); debug (bit 19) and migration agent (bit 18) off.
	DefaultSNPPolicy uint64 = 0x30000
	// DefaultCBitPos is the C-bit position of Milan/Genoa/Turin.
	DefaultCBitPos = 51
	// DefaultReducedPhysBits is the physical address bit reduction of
	// Milan/Genoa/Turin.
	DefaultReducedPhysBits = 1
	// DefaultQGSSocket is where Intel's QGS listens by default.
	DefaultQGSSocket = "/var/run/tdx-qgs/qgs.socket"
)

// SNP policy bits hostd refuses to set (AMD SEV-SNP ABI, guest policy).
const (
	snpPolicyReservedMBO = 1 << 16
	snpPolicyMigrateMA   = 1 << 18
	snpPolicyDebug       = 1 << 19
)

// Spec is a guest definition. In YAML (strict: unknown keys are errors):
//
//	name: demo                 # [a-z0-9-], 1..32, starts and ends alphanumeric
//	tee: sim                   # sev-snp | tdx | sim
//	vcpus: 2                   # 1..64
//	memory: 1GiB               # ≥ 128MiB, whole MiB
//	image:                     # the output of `confidant-image build`
//	  manifest: out/manifest.json   # optional; fields below override it
//	  esp: out/esp.img         # ovmf: FAT ESP with the signed UKI
//	  uefi_vars: out/uefi-vars.fd   # ovmf: OVMF_VARS_4M template (copied per guest)
//	  kernel: out/vmlinuz      # seabios, sev-snp, tdx (direct boot)
//	  initrd: out/initrd.img   # seabios, sev-snp, tdx
//	  cmdline: "console=ttyS0" # seabios, sev-snp, tdx
//	  os_disk: out/os.img      # optional (initramfs-only guests)
//	temp_disk_size: 4GiB       # optional; 0 or absent: no temp disk
//	verifier: 127.0.0.1:8443   # host:port; the guest reaches it at 10.0.2.100:port
//	firmware:
//	  kind: ovmf               # ovmf (sim default: Secure Boot) | seabios (sim, development) | igvm
//	  path: ""                 # sim defaults: OVMF_CODE_4M.secboot.fd, bios-256k.bin
//	vtpm: swtpm                # swtpm (sim) | svsm (sev-snp with igvm) | none
//	tpm_device: tpm-crb        # sim: tpm-crb | tpm-tis
//	cpu: ""                    # vCPU model; default max (sim), EPYC-v4 (sev-snp), host (tdx)
//	snp:                       # sev-snp (and the sim's report fields)
//	  policy: 0x30000
//	  cbitpos: 51
//	  reduced_phys_bits: 1
//	  host_data: ""            # base64, 32 bytes, optional
//	tdx:
//	  qgs_socket: /var/run/tdx-qgs/qgs.socket
//
// Relative paths are relative to the spec file (or, for paths from the
// manifest, to the manifest); the CLI makes them absolute before sending the
// spec to the daemon, which accepts only absolute paths.
type Spec struct {
	Name         string   `yaml:"name" json:"name"`
	TEE          TEE      `yaml:"tee" json:"tee"`
	VCPUs        int      `yaml:"vcpus" json:"vcpus"`
	Memory       Size     `yaml:"memory" json:"memory"`
	Image        Image    `yaml:"image" json:"image"`
	TempDiskSize Size     `yaml:"temp_disk_size,omitempty" json:"temp_disk_size,omitempty"`
	Verifier     string   `yaml:"verifier" json:"verifier"`
	Firmware     Firmware `yaml:"firmware,omitempty" json:"firmware,omitzero"`
	VTPM         VTPM     `yaml:"vtpm,omitempty" json:"vtpm,omitempty"`
	TPMDevice    string   `yaml:"tpm_device,omitempty" json:"tpm_device,omitempty"`
	CPU          string   `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	SNP          SNP      `yaml:"snp,omitempty" json:"snp,omitzero"`
	TDX          TDX      `yaml:"tdx,omitempty" json:"tdx,omitzero"`
}

// Image is what the guest boots: the fields of the image manifest.
type Image struct {
	Manifest string `yaml:"manifest,omitempty" json:"manifest,omitempty"`
	Kernel   string `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	Initrd   string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	Cmdline  string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
	OSDisk   string `yaml:"os_disk,omitempty" json:"os_disk,omitempty"`
	// ESP is the EFI system partition image holding the signed UKI
	// (ovmf guests); QEMU gets it read-only.
	ESP string `yaml:"esp,omitempty" json:"esp,omitempty"`
	// UEFIVars is the OVMF variable store template (ovmf guests): copied
	// once into the guest's state directory, never written.
	UEFIVars string `yaml:"uefi_vars,omitempty" json:"uefi_vars,omitempty"`
}

// Firmware selects the guest firmware.
type Firmware struct {
	Kind FirmwareKind `yaml:"kind,omitempty" json:"kind,omitempty"`
	Path string       `yaml:"path,omitempty" json:"path,omitempty"`
}

// SNP holds SEV-SNP launch parameters.
type SNP struct {
	Policy          uint64 `yaml:"policy,omitempty" json:"policy,omitempty"`
	CBitPos         int    `yaml:"cbitpos,omitempty" json:"cbitpos,omitempty"`
	ReducedPhysBits int    `yaml:"reduced_phys_bits,omitempty" json:"reduced_phys_bits,omitempty"`
	// HostData is 32 bytes, standard base64, put in the report's HOST_DATA.
	HostData string `yaml:"host_data,omitempty" json:"host_data,omitempty"`
}

// TDX holds TDX launch parameters.
type TDX struct {
	QGSSocket string `yaml:"qgs_socket,omitempty" json:"qgs_socket,omitempty"`
}

const (
	maxSpecBytes     = 64 << 10
	maxManifestBytes = 1 << 20
	maxCmdline       = 4096
	maxVCPUs         = 64
	minMemory        = 128 << 20
	maxMemory        = 1 << 40
	maxTempDisk      = 16 << 40
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Resolve fills the image fields left empty from the manifest (if one is
// named), and the defaults that depend on the TEE. It reads the manifest
// file.
func (s *Spec) Resolve() error { return s.resolve("") }

// ResolveOutside is Resolve for the daemon: it refuses (ErrInvalid and
// ErrStateDir) a manifest that resolves into stateDir before reading it.
func (s *Spec) ResolveOutside(stateDir string) error { return s.resolve(stateDir) }

func (s *Spec) resolve(stateDir string) error {
	if s.Image.Manifest != "" {
		m, err := loadManifest(s.Image.Manifest, stateDir)
		if err != nil {
			return err
		}
		m.fill(s, filepath.Dir(s.Image.Manifest))
	}
	switch s.TEE {
	case TEESim:
		// UEFI with Secure Boot unless the spec asks for SeaBIOS.
		s.Firmware.Kind = cmp(s.Firmware.Kind, FirmwareOVMF)
		if s.Firmware.Kind == FirmwareOVMF {
			s.Firmware.Path = cmp(s.Firmware.Path, DefaultOVMFSecboot)
		}
		s.VTPM = cmp(s.VTPM, VTPMSwtpm)
		s.CPU = cmp(s.CPU, "max")
	case TEESNP:
		s.Firmware.Kind = cmp(s.Firmware.Kind, FirmwareOVMF)
		s.VTPM = cmp(s.VTPM, VTPMNone)
		s.CPU = cmp(s.CPU, "EPYC-v4")
		s.SNP.CBitPos = cmp(s.SNP.CBitPos, DefaultCBitPos)
		s.SNP.ReducedPhysBits = cmp(s.SNP.ReducedPhysBits, DefaultReducedPhysBits)
	case TEETDX:
		s.Firmware.Kind = cmp(s.Firmware.Kind, FirmwareOVMF)
		s.VTPM = cmp(s.VTPM, VTPMNone)
		s.CPU = cmp(s.CPU, "host")
		s.TDX.QGSSocket = cmp(s.TDX.QGSSocket, DefaultQGSSocket)
	}
	if s.VTPM == VTPMSwtpm {
		s.TPMDevice = cmp(s.TPMDevice, "tpm-crb")
	}
	if s.TEE == TEESim || s.TEE == TEESNP {
		s.SNP.Policy = cmp(s.SNP.Policy, DefaultSNPPolicy)
	}
	if s.Firmware.Kind == FirmwareSeaBIOS {
		s.Firmware.Path = cmp(s.Firmware.Path, DefaultSeaBIOS)
	}
	return nil
}

func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// ValidateOptions are the daemon's choices that validation depends on.
type ValidateOptions struct {
	// AllowHostVTPM lets sev-snp and tdx guests use a host-visible swtpm.
	// For development only: the host can then read and forge the vTPM.
	AllowHostVTPM bool
	// SkipFileChecks skips checking that the named files exist (golden
	// tests of argument builders use made-up paths).
	SkipFileChecks bool
	// StateDir is hostd's state directory: a path that resolves into it,
	// after symlinks, is refused (ErrStateDir). Empty: not checked; the
	// daemon always sets it.
	StateDir string
}

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

	// Image.
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
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
				continue
			}
		}
		if !opts.SkipFileChecks && p.name != "tdx.qgs_socket" {
			if err := checkFileKind(p.name, p.path); err != nil {
				bad("%s: %v", p.name, err)
			}
		}
	}

	// Firmware, vTPM, TEE-specific.
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
		if s.Firmware.Kind != FirmwareOVMF && s.Firmware.Kind != FirmwareSeaBIOS {
			bad("firmware.kind %q: sim guests boot ovmf (Secure Boot) or, for development, seabios", s.Firmware.Kind)
		}
		if s.VTPM != VTPMSwtpm && s.VTPM != VTPMNone {
			bad("vtpm %q: sim guests use swtpm or none", s.VTPM)
		}
		if s.TDX != (TDX{}) {
			bad("tdx: only for tdx guests")
		}
	case TEESNP:
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
	case TEETDX:
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
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// HostData returns the decoded snp.host_data (zero when unset). Call after
// Validate.
func (s *Spec) HostData() [32]byte {
	var out [32]byte
	if b, err := base64.StdEncoding.Strict().DecodeString(s.SNP.HostData); err == nil && len(b) == 32 {
		copy(out[:], b)
	}
	return out
}
