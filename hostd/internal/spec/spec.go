// Package spec defines a guest: the YAML document an operator writes
// (`confidant-hostd vm create -f spec.yaml`), its strict parsing, the image
// manifest written by `confidant-image build`, and validation that reports
// every problem at once.
package spec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
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
	// FirmwareSeaBIOS is QEMU's legacy BIOS, used for sim guests
	// (direct kernel boot, fast under TCG).
	FirmwareSeaBIOS FirmwareKind = "seabios"
	// FirmwareOVMF is an OVMF build: AmdSev (with the kernel hashes
	// table) for sev-snp, IntelTdx for tdx.
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
//	  kernel: out/vmlinuz
//	  initrd: out/initrd.img
//	  cmdline: "console=ttyS0"
//	  os_disk: out/os.img      # optional (initramfs-only guests)
//	temp_disk_size: 4GiB       # optional; 0 or absent: no temp disk
//	verifier: 127.0.0.1:8443   # host:port; the guest reaches it at 10.0.2.100:port
//	firmware:
//	  kind: seabios            # seabios (sim) | ovmf | igvm
//	  path: ""                 # default: /usr/share/seabios/bios-256k.bin for seabios
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

// Manifest is the image manifest (manifest.json) written by
// `confidant-image build`. Fields other than these are ignored, so the image
// tool may add reference values and digests.
type Manifest struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	OSDisk  string `json:"os_disk"`
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

// ParseYAML decodes a spec strictly: unknown keys, several documents and
// oversize input are errors. Relative paths are made absolute against
// baseDir. The result is not validated; call Resolve and Validate.
func ParseYAML(b []byte, baseDir string) (*Spec, error) {
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec larger than %d bytes", ErrInvalid, maxSpecBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Spec
	if err := decodeYAML(dec, &s); err != nil {
		return nil, fmt.Errorf("%w: decoding YAML: %v", ErrInvalid, err)
	}
	var extra any
	if err := decodeYAML(dec, &extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	s.absPaths(baseDir)
	return &s, nil
}

// decodeYAML recovers from panics in the YAML decoder (hostile input must
// not bring the CLI or daemon down).
func decodeYAML(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML decoder panicked: %v", r)
		}
	}()
	return dec.Decode(v)
}

// ParseJSON decodes a spec sent to the daemon strictly (unknown fields and
// trailing data are errors). The result is not validated.
func ParseJSON(b []byte) (*Spec, error) {
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec larger than %d bytes", ErrInvalid, maxSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the spec", ErrInvalid)
	}
	if err := checkDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %v", ErrInvalid, err)
	}
	return &s, nil
}

func (s *Spec) absPaths(baseDir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	abs(&s.Image.Manifest)
	abs(&s.Image.Kernel)
	abs(&s.Image.Initrd)
	abs(&s.Image.OSDisk)
	abs(&s.Firmware.Path)
}

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
		dir := filepath.Dir(s.Image.Manifest)
		fill := func(dst *string, v string, isPath bool) {
			if *dst != "" || v == "" {
				return
			}
			if isPath && !filepath.IsAbs(v) {
				v = filepath.Join(dir, v)
			}
			*dst = v
		}
		fill(&s.Image.Kernel, m.Kernel, true)
		fill(&s.Image.Initrd, m.Initrd, true)
		fill(&s.Image.Cmdline, m.Cmdline, false)
		fill(&s.Image.OSDisk, m.OSDisk, true)
	}
	switch s.TEE {
	case TEESim:
		s.Firmware.Kind = cmp(s.Firmware.Kind, FirmwareSeaBIOS)
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

// LoadManifest reads an image manifest. Its paths, when relative, are
// relative to the manifest's directory.
func LoadManifest(path string) (*Manifest, error) { return loadManifest(path, "") }

// loadManifest reads a manifest; with stateDir set, one that resolves into
// it is refused before a byte is read.
func loadManifest(path, stateDir string) (*Manifest, error) {
	var f *os.File
	var err error
	if stateDir != "" {
		if err = checkPath(path); err == nil {
			f, err = OpenOutside(stateDir, path, os.O_RDONLY)
		}
		if errors.Is(err, ErrStateDir) {
			return nil, fmt.Errorf("%w: image.manifest: %w", ErrInvalid, err)
		}
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: opening image manifest: %v", ErrInvalid, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading image manifest: %v", ErrInvalid, err)
	}
	return ParseManifest(b)
}

// ParseManifest decodes an image manifest. kernel and initrd are required.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%w: image manifest larger than %d bytes", ErrInvalid, maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: decoding image manifest: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the image manifest", ErrInvalid)
	}
	var errs []error
	if m.Kernel == "" {
		errs = append(errs, errors.New("manifest has no kernel"))
	}
	if m.Initrd == "" {
		errs = append(errs, errors.New("manifest has no initrd"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return &m, nil
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
	if s.Image.Kernel == "" {
		bad("image.kernel: missing (give it or a manifest)")
	}
	if s.Image.Initrd == "" {
		bad("image.initrd: missing (give it or a manifest)")
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
		if s.Firmware.Kind != FirmwareSeaBIOS {
			bad("firmware.kind %q: sim guests boot SeaBIOS (the simulated measurement covers it)", s.Firmware.Kind)
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

// SplitVerifier checks and splits a verifier address "host:port". host is
// an IP address or a DNS name; port 1..65535.
func SplitVerifier(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		// net's error repeats addr unquoted (a newline in it would
		// reach the API answer raw): keep only its reason.
		reason := err.Error()
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			reason = ae.Err
		}
		return "", 0, fmt.Errorf("address %q: %s", addr, reason)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return "", 0, fmt.Errorf("address %q: bad port", addr)
	}
	if net.ParseIP(h) == nil && !dnsNameRE.MatchString(h) {
		return "", 0, fmt.Errorf("address %q: host is neither an IP address nor a DNS name", addr)
	}
	if strings.Contains(h, ":") {
		// QEMU's guestfwd syntax cannot carry an IPv6 literal.
		return "", 0, fmt.Errorf("address %q: IPv6 literals are not supported by QEMU guestfwd", addr)
	}
	return h, n, nil
}

var dnsNameRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

var cpuRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validCPU(s string) bool { return cpuRE.MatchString(s) }

// checkPath accepts absolute, clean paths without characters that QEMU or
// swtpm option syntax would misread.
func checkPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("path %q is not clean", p)
	}
	if len(p) > 4096 || strings.ContainsAny(p, ",=\n\r\t\x00") || !printable(p) {
		return fmt.Errorf("path %q: contains characters hostd refuses (',', '=', control characters)", p)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}
