// Package spec defines a guest: the YAML document an operator writes
// (`confidant-hostd vm create -f spec.yaml`), its strict parsing, the image
// manifest written by `confidant-image build`, and validation that reports
// every problem at once.
package spec

import (
	"encoding/base64"
	"errors"
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

// HostData returns the decoded snp.host_data (zero when unset). Call after
// Validate.
func (s *Spec) HostData() [32]byte {
	var out [32]byte
	if b, err := base64.StdEncoding.Strict().DecodeString(s.SNP.HostData); err == nil && len(b) == 32 {
		copy(out[:], b)
	}
	return out
}
