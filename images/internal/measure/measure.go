// Package measure computes the launch measurement a Confidant guest will
// report: the SEV-SNP launch digest of an OVMF guest booted with measured
// direct boot, or the simulated TEE's digest of a SeaBIOS guest — the value
// confidant-hostd's simulated secure processor puts in its reports.
//
// For the simulation the inputs are exactly hostd's (hostd/internal/guest,
// prepareBoot): the firmware, kernel and initrd bytes, the kernel command
// line verbatim (hostd passes the manifest's cmdline to -append unchanged,
// nothing appended), the guest's vCPU count and the vCPU type SimVCPUType,
// whatever -cpu QEMU runs with.
package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/confidant-cvm/confidant/shared/capped"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
)

// Kind names which launch digest a Measurement is. The names are the TEE
// kinds of the verifier's evidence and reference values.
type Kind string

// The kinds.
const (
	// KindSNP is the SEV-SNP hardware launch digest (snp.SNPLaunchDigest).
	KindSNP Kind = "sev-snp"
	// KindSim is the simulated TEE's launch digest (snp.SimLaunchDigest).
	KindSim Kind = "sim-sev-snp"
)

// Defaults of the simulated TEE, as confidant-hostd uses them.
const (
	// DefaultSimFirmware is the SeaBIOS image hostd boots sim guests with
	// when the spec names none (hostd/internal/spec DefaultSeaBIOS).
	DefaultSimFirmware = "/usr/share/seabios/bios-256k.bin"
	// DefaultSimOVMFCode is the OVMF code image hostd boots sim guests of
	// UEFI images with (Debian's ovmf, the SMM Secure Boot build): the
	// launch digest of such a guest covers it alone, no kernel.
	DefaultSimOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	// SimVCPUType is the vCPU model hostd names in every simulated launch
	// digest (hostd/internal/guest SimVCPUType), whatever -cpu QEMU runs.
	SimVCPUType = "EPYC-v4"
	// DefaultVCPUType is the vCPU model hostd gives sev-snp guests when the
	// spec names none.
	DefaultVCPUType = "EPYC-v4"
)

// Caps on what is read into memory, the same as hostd's: an input hostd
// would refuse to boot is refused here too.
const (
	MaxKernel   = 256 << 20
	MaxInitrd   = 1 << 30
	MaxFirmware = 64 << 20
)

// ErrInput means the inputs are incomplete or contradictory.
var ErrInput = errors.New("invalid measurement inputs")

// Inputs name the files and parameters of one guest launch.
type Inputs struct {
	// Kind selects the digest; "": KindSNP.
	Kind Kind
	// Firmware is the OVMF image (KindSNP, required) or the BIOS the
	// simulated guest boots (KindSim; "": DefaultSimFirmware).
	Firmware string
	// Kernel is the -kernel file; "": no measured direct boot (then Initrd
	// and Cmdline must be empty).
	Kernel string
	// Initrd is the -initrd file; "": none.
	Initrd string
	// Cmdline is the -append string, byte for byte.
	Cmdline string
	// VCPUs is the guest's vCPU count.
	VCPUs int
	// VCPUType is the QEMU CPU model; "": DefaultVCPUType. For KindSim it
	// must be SimVCPUType (or empty): hostd measures nothing else.
	VCPUType string
	// GuestFeatures is the VMSA SEV_FEATURES; 0: snp.DefaultGuestFeatures.
	GuestFeatures uint64
	// VMMType is "QEMU" or "EC2"; "": QEMU. KindSim: QEMU only.
	VMMType string
}

// File identifies one measured input.
type File struct {
	// Path is where it was read from.
	Path string `json:"path"`
	// SHA256 is the hex SHA-256 of its bytes.
	SHA256 string `json:"sha256"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
}

// Measurement is a computed launch digest with what it covers.
type Measurement struct {
	// Kind is the digest kind.
	Kind Kind `json:"kind"`
	// Measurement is the 48-byte digest in lower-case hex, as the report's
	// MEASUREMENT field and the verifier's reference values spell it.
	Measurement string `json:"measurement"`
	// Firmware, Kernel and Initrd are the measured files (Kernel and
	// Initrd nil when not given).
	Firmware File  `json:"firmware"`
	Kernel   *File `json:"kernel,omitempty"`
	Initrd   *File `json:"initrd,omitempty"`
	// Cmdline is the measured kernel command line.
	Cmdline string `json:"cmdline"`
	// VCPUs, VCPUType, GuestFeatures and VMMType are the launch parameters
	// (resolved defaults).
	VCPUs         int    `json:"vcpus"`
	VCPUType      string `json:"vcpu_type"`
	GuestFeatures uint64 `json:"guest_features"`
	VMMType       string `json:"vmm_type"`
}

// Compute reads the inputs and computes their launch digest.
func Compute(in Inputs) (*Measurement, error) {
	m, params, err := resolve(in)
	if err != nil {
		return nil, err
	}
	var errs []error
	read := func(path string, limit int64, what string) ([]byte, *File) {
		b, err := capped.ReadFile(path, limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", what, err))
			return nil, nil
		}
		sum := sha256.Sum256(b)
		return b, &File{Path: path, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
	}
	var fw *File
	params.OVMF, fw = read(m.Firmware.Path, MaxFirmware, "firmware")
	if in.Kernel != "" {
		params.Kernel, m.Kernel = read(in.Kernel, MaxKernel, "kernel")
		if params.Kernel == nil {
			params.Kernel = []byte{}
		}
	}
	if in.Initrd != "" {
		params.Initrd, m.Initrd = read(in.Initrd, MaxInitrd, "initrd")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.Firmware = *fw
	var d [snp.DigestSize]byte
	if m.Kind == KindSim {
		d, err = snp.SimLaunchDigest(params)
	} else {
		d, err = snp.SNPLaunchDigest(params)
	}
	if err != nil {
		return nil, fmt.Errorf("computing %s launch digest: %w", m.Kind, err)
	}
	m.Measurement = hex.EncodeToString(d[:])
	return m, nil
}

// resolve checks the inputs and fills the defaults.
func resolve(in Inputs) (*Measurement, snp.SNPParams, error) {
	m := &Measurement{
		Kind: in.Kind, Cmdline: in.Cmdline, VCPUs: in.VCPUs, VCPUType: in.VCPUType,
		GuestFeatures: in.GuestFeatures, VMMType: in.VMMType,
	}
	if m.Kind == "" {
		m.Kind = KindSNP
	}
	if m.GuestFeatures == 0 {
		m.GuestFeatures = snp.DefaultGuestFeatures
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInput}, args...)...))
	}
	switch vmm, err := snp.ParseVMM(m.VMMType); {
	case err != nil:
		bad("%w", err)
	case vmm == snp.VMMEC2:
		m.VMMType = "EC2"
	default:
		m.VMMType = "QEMU"
	}
	switch m.Kind {
	case KindSNP:
		m.Firmware.Path = in.Firmware
		if in.Firmware == "" {
			bad("an OVMF firmware image is required for the SEV-SNP launch digest")
		}
		if m.VCPUType == "" {
			m.VCPUType = DefaultVCPUType
		}
	case KindSim:
		m.Firmware.Path = in.Firmware
		if m.Firmware.Path == "" {
			m.Firmware.Path = DefaultSimFirmware
		}
		if m.VCPUType == "" {
			m.VCPUType = SimVCPUType
		}
		if m.VCPUType != SimVCPUType {
			bad("vCPU type %q: the simulated TEE always measures %s", m.VCPUType, SimVCPUType)
		}
		if m.VMMType == "EC2" {
			bad("VMM type EC2: the simulated TEE runs under QEMU")
		}
	default:
		bad("kind %q: want %s or %s", m.Kind, KindSNP, KindSim)
	}
	if in.Kernel == "" && (in.Initrd != "" || in.Cmdline != "") {
		bad("%w", snp.ErrKernelRequired)
	}
	if m.VCPUs < 1 || m.VCPUs > snp.MaxVCPUs {
		bad("%d vCPUs: want 1 to %d", m.VCPUs, snp.MaxVCPUs)
	}
	if _, err := snp.VCPUSignature(m.VCPUType); err != nil {
		bad("%w", err)
	}
	if len(errs) > 0 {
		return nil, snp.SNPParams{}, errors.Join(errs...)
	}
	return m, snp.SNPParams{
		Append: in.Cmdline, VCPUs: m.VCPUs, VCPUType: m.VCPUType,
		GuestFeatures: m.GuestFeatures, VMMType: m.VMMType,
	}, nil
}
