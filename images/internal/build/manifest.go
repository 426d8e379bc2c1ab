package build

import (
	"encoding/json"
	"fmt"

	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// ManifestFormat is the version of the manifest layout.
const ManifestFormat = 1

// ReferenceValuesVersion is the verifier's reference values format version
// (verifier/internal/policy ReferenceVersion).
const ReferenceValuesVersion = 1

// Manifest is manifest.json. Its kernel, initrd, cmdline and os_disk fields
// are the ones confidant-hostd reads (hostd/internal/spec Manifest); file
// names are relative to the manifest's directory.
type Manifest struct {
	// Format is ManifestFormat.
	Format int `json:"format"`
	// Name and Version identify the image.
	Name    string `json:"name"`
	Version string `json:"version"`
	// Tool is "confidant-image VERSION".
	Tool string `json:"tool"`

	// Boot is how the guest boots: BootUEFI (OVMF with Secure Boot
	// enforced boots UKI from ESP, with the variable store UEFIVars as its
	// template) or BootDirect (SeaBIOS boots Kernel, Initrd, Cmdline).
	Boot string `json:"boot"`
	// Kernel, Initrd, Cmdline and OSDisk are what hostd boots; Cmdline is
	// passed to QEMU's -append verbatim and is part of the measurement.
	// With BootUEFI, Kernel, Initrd and Cmdline are empty: they are inside
	// the UKI (vmlinuz and initrd.img are still written, for review).
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	OSDisk  string `json:"os_disk"`
	// UKI is the signed Unified Kernel Image, ESP the FAT EFI system
	// partition holding it as \EFI\BOOT\BOOTX64.EFI, UEFIVars the OVMF
	// variable store template with the builder's certificate as PK, KEK and
	// db (BootUEFI only).
	UKI      string `json:"uki,omitempty"`
	ESP      string `json:"esp,omitempty"`
	UEFIVars string `json:"uefi_vars,omitempty"`
	// Firmware is the firmware code image the launch digest covers
	// (BootUEFI only; absolute path on the build machine).
	Firmware string `json:"firmware,omitempty"`
	// PCRs are the predicted SHA-256 PCRs 4, 7 and 11 ("4": HEX), and
	// PCREvents the events they replay from, in log order (BootUEFI only).
	PCRs      map[string]string `json:"pcrs,omitempty"`
	PCREvents []PCREvent        `json:"pcr_events,omitempty"`

	// AgentConfig is the agent configuration baked into the initramfs.
	AgentConfig string `json:"agent_config"`
	// ReferenceValues is the reference values file for the verifier.
	ReferenceValues string `json:"reference_values"`
	// TEE is the agent's evidence interface (agent.yaml tee).
	TEE string `json:"tee"`
	// KeyName is the verifier key the agent asks to be released.
	KeyName string `json:"key_name"`
	// KeyOrigin is who made the key: "platform" (the verifier) or
	// "customer" (the key file's).
	KeyOrigin string `json:"key_origin"`
	// KeyVersion is the key's version the verifier answered the build's
	// registration with; 0: the build did not register the key.
	KeyVersion int `json:"key_version"`
	// ReleasePolicy is the key's release policy file; ReleasePolicySHA256
	// its SHA-256 (the verifier's release_policy_sha256).
	ReleasePolicy       string `json:"release_policy"`
	ReleasePolicySHA256 string `json:"release_policy_sha256"`
	// LUKSUUID is the OS disk's LUKS2 UUID.
	LUKSUUID string `json:"luks_uuid"`
	// VerifierURL is the verifier URL baked into the agent configuration.
	VerifierURL string `json:"verifier_url"`
	// SourceDateEpoch dates every initramfs entry.
	SourceDateEpoch int64 `json:"source_date_epoch"`

	// Files maps each file of the directory (but the manifest) to its
	// digest.
	Files map[string]FileDigest `json:"files"`
	// Agent is the digest of the agent binary installed as /init.
	Agent FileDigest `json:"agent"`
	// Measurements are the launch digests, one per vCPU count.
	Measurements []measure.Measurement `json:"measurements"`
}

// FileDigest is the SHA-256 and size of a file.
type FileDigest struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ReferenceValue describes one accepted measurement in the reference values
// file: which image it belongs to and the launch it was computed for.
type ReferenceValue struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	VCPUs    int    `json:"vcpus"`
	VCPUType string `json:"vcpu_type"`
}

// referenceDoc is the reference values file, its keys in a fixed order.
type referenceDoc struct {
	Version int               `json:"version"`
	SNP     *referenceSection `json:"sev-snp,omitempty"`
	Sim     *referenceSection `json:"sim-sev-snp,omitempty"`
}

type referenceSection struct {
	Measurements map[string]ReferenceValue `json:"measurements"`
	// PCRs are the accepted PCR values by bank and index:
	// {"sha256": {"4": [HEX], ...}}.
	PCRs map[string]map[string][]string `json:"pcrs,omitempty"`
	// MinimumTCB and AllowSMT are written for simulated UEFI images only,
	// which policies/appraisal/sim_production.rego appraises as the SEV-SNP
	// production policy does: the simulated platform's own TCB, and SMT
	// allowed because hostd's default guest policy allows it (as QEMU's
	// does), which the simulated PLATFORM_INFO then reports. For hardware
	// the minimum TCB depends on the hosts and is the security team's.
	MinimumTCB *referenceTCB `json:"minimum_tcb,omitempty"`
	AllowSMT   bool          `json:"allow_smt,omitempty"`
}

// referenceTCB is a minimum TCB in the reference values: the SPL of each
// firmware component.
type referenceTCB struct {
	BL        uint8 `json:"bl"`
	TEE       uint8 `json:"tee"`
	SNP       uint8 `json:"snp"`
	Microcode uint8 `json:"microcode"`
}

// simMinimumTCB is the simulated platform's TCB (shared/tee/snp/sim).
func simMinimumTCB() *referenceTCB {
	t := sim.PlatformTCB()
	return &referenceTCB{BL: t.BlSpl, TEE: t.TeeSpl, SNP: t.SnpSpl, Microcode: t.UcodeSpl}
}

// fileNames are the files of the output directory the manifest lists.
func (m *Manifest) fileNames() []string {
	names := []string{KernelFile, InitrdFile, AgentConfigFile, OSDiskFile, ReferenceValuesFile, ReleasePolicyFile}
	if m.Boot == BootUEFI {
		names = append(names, UKIFile, ESPFile, UEFIVarsFile)
	}
	return names
}

// referenceValues renders the verifier's reference values file
// (policies/reference-values.example.json): {"version": 1, KIND:
// {"measurements": {HEX: {...}}, "pcrs": {"sha256": {"4": [HEX], ...}}}},
// KIND "sev-snp" or "sim-sev-snp"; "pcrs" only with m.PCRs.
func referenceValues(m *Manifest) ([]byte, error) {
	doc := referenceDoc{Version: ReferenceValuesVersion}
	for _, mm := range m.Measurements {
		sec := &doc.SNP
		switch mm.Kind {
		case measure.KindSNP:
		case measure.KindSim:
			sec = &doc.Sim
		default:
			return nil, fmt.Errorf("encoding reference values: unknown measurement kind %q", mm.Kind)
		}
		if *sec == nil {
			*sec = &referenceSection{Measurements: map[string]ReferenceValue{}}
		}
		(*sec).Measurements[mm.Measurement] = ReferenceValue{
			Name: m.Name, Version: m.Version, VCPUs: mm.VCPUs, VCPUType: mm.VCPUType,
		}
		if len(m.PCRs) > 0 {
			pcrs := map[string][]string{}
			for i, v := range m.PCRs {
				pcrs[i] = []string{v}
			}
			(*sec).PCRs = map[string]map[string][]string{"sha256": pcrs}
			if mm.Kind == measure.KindSim {
				(*sec).MinimumTCB, (*sec).AllowSMT = simMinimumTCB(), true
			}
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding reference values: %w", err)
	}
	return append(b, '\n'), nil
}
