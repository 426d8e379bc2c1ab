package build

import (
	"encoding/json"
	"fmt"

	"github.com/confidant-cvm/confidant/images/internal/measure"
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

	// Kernel, Initrd, Cmdline and OSDisk are what hostd boots; Cmdline is
	// passed to QEMU's -append verbatim and is part of the measurement.
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	OSDisk  string `json:"os_disk"`

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
}

// referenceValues renders the verifier's reference values file
// (policies/reference-values.example.json): {"version": 1, KIND:
// {"measurements": {HEX: {...}}}}, KIND "sev-snp" or "sim-sev-snp".
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
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding reference values: %w", err)
	}
	return append(b, '\n'), nil
}
