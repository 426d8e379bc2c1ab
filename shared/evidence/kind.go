package evidence

import "fmt"

// Kind names the hardware that produced a report.
type Kind string

// The hardware kinds the envelope can carry.
const (
	// KindSNP is an AMD SEV-SNP attestation report signed by a VCEK or VLEK
	// chaining to AMD's roots.
	KindSNP Kind = "sev-snp"
	// KindTDX is an Intel TDX quote (version 4 or 5).
	KindTDX Kind = "tdx"
	// KindSimSNP is an SEV-SNP format report signed by the simulated AMD
	// secure processor (hostd); it verifies only against an explicitly
	// configured simulated root.
	KindSimSNP Kind = "sim-sev-snp"
)

// ParseKind returns the Kind named by s, or an error wrapping
// ErrUnknownKind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindSNP, KindTDX, KindSimSNP:
		return k, nil
	}
	return "", fmt.Errorf("parsing TEE kind %q: %w", s, ErrUnknownKind)
}

// String returns the kind's wire name.
func (k Kind) String() string { return string(k) }
