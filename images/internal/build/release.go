package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/confidant-cvm/confidant/images/internal/measure"
)

// ReleasePolicyFile is the release policy's name in the output directory.
const ReleasePolicyFile = "release-policy.rego"

// MaxReleasePolicy is the verifier's limit on a release policy's size
// (verifier/internal/release MaxPolicySize).
const MaxReleasePolicy = 256 << 10

// Packages of the generated release policies. The SEV-SNP one is the
// package of policies/release/image_measurement.rego, whose Rego tests run
// unchanged against it.
const (
	ReleasePackageSNP = "confidant.release.image_measurement"
	ReleasePackageSim = "confidant.release.sim_image_measurement"
	// ReleasePackageSimUEFI is the simulated TEE's policy for a BootUEFI
	// image: the production rules (status affirming) on the simulation.
	ReleasePackageSimUEFI = "confidant.release.sim_secure_boot_image_measurement"
)

// hexRE matches a launch measurement: SHA-384 in lower-case hex.
var hexRE = regexp.MustCompile(`^[0-9a-f]{96}$`)

// simHWModel prefixes the hwmodel claim of simulated evidence
// (verifier/internal/appraise SimHWModel).
const simHWModel = "confidant simulated AMD SEV-SNP "

// ReleasePolicy renders the release policy that binds key keyName to the
// image's launch measurements (m.Measurements, all of one kind):
//
//   - SEV-SNP: policies/release/image_measurement.rego with the image's
//     measurements: AMD SEV-SNP hardware (never the simulation), status
//     affirming, guest policy without debug, measurement one of the image's.
//   - simulated: the same binding for the simulated TEE (tee.kind
//     sim-sev-snp, tee.simulated, hwmodel "confidant simulated AMD SEV-SNP
//     (...)"), status affirming or warning as in
//     policies/release/sim_development.rego (SeaBIOS has no Secure Boot,
//     which the development appraisal policy reports as a warning).
//   - simulated, boot uefi (m.Boot BootUEFI): the same, but status
//     affirming only — what a production appraisal policy says of a guest
//     with Secure Boot on and PCRs 4, 7 and 11 as predicted.
//
// The output depends only on its inputs.
func ReleasePolicy(m *Manifest, keyName string) ([]byte, error) {
	kind, set, err := measurementSet(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	switch kind {
	case measure.KindSNP:
		writeSNPPolicy(&b, m, keyName, set)
	case measure.KindSim:
		if m.Boot == BootUEFI {
			writeSimUEFIPolicy(&b, m, keyName, set)
			break
		}
		writeSimDirectPolicy(&b, m, keyName, set)
	default:
		return nil, fmt.Errorf("writing release policy: unknown measurement kind %q", kind)
	}
	b.WriteString(`
# measurement_known holds when the launch measurement is one of the image's.
measurement_known if image_measurements[input.tee.measurement]

deny contains msg if {
	not measurement_known
	msg := sprintf("launch measurement %v is not one of image %v's", [object.get(input, ["tee", "measurement"], "missing"), data.key.name])
}

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
`)
	return b.Bytes(), nil
}

// measurementSet checks the image's measurements, all of one kind, and
// writes them as the Rego set image_measurements.
func measurementSet(m *Manifest) (measure.Kind, string, error) {
	if len(m.Measurements) == 0 {
		return "", "", fmt.Errorf("writing release policy: no measurements")
	}
	kind := m.Measurements[0].Kind
	notes := map[string][]string{}
	for _, mm := range m.Measurements {
		if mm.Kind != kind {
			return "", "", fmt.Errorf("writing release policy: measurements of two kinds, %s and %s", kind, mm.Kind)
		}
		if !hexRE.MatchString(mm.Measurement) {
			return "", "", fmt.Errorf("writing release policy: measurement %q is not lower-case hex SHA-384", mm.Measurement)
		}
		notes[mm.Measurement] = append(notes[mm.Measurement], fmt.Sprintf("%d vCPUs", mm.VCPUs))
	}
	var set strings.Builder
	set.WriteString("image_measurements := {\n")
	for _, h := range slices.Sorted(maps.Keys(notes)) {
		fmt.Fprintf(&set, "\t%s: %s,\n", regoString(h), regoString(m.Name+" "+m.Version+", "+strings.Join(notes[h], ", ")))
	}
	set.WriteString("}\n")
	return kind, set.String(), nil
}

// writeSNPPolicy writes the head of the release policy of an AMD SEV-SNP
// image.
func writeSNPPolicy(b *bytes.Buffer, m *Manifest, keyName, set string) {
	fmt.Fprintf(b, `# Release policy written by confidant-image build for image %s %s (key %s):
# the key is released only to an AMD SEV-SNP guest (real hardware) whose
# appraisal was affirming, whose launch measurement is one of the image's,
# and whose guest policy forbids debugging. The rules are those of
# policies/release/image_measurement.rego.
#
# Input: the token's claims. data.key: {"name", "version", "origin"}.
package %s

# The image's launch measurements (hex SHA-384), one per vCPU count.
%s
# snp_hardware holds for verified evidence from AMD SEV-SNP hardware.
snp_hardware if {
	input.tee.kind == "sev-snp"
	startswith(input.hwmodel, "AMD SEV-SNP ")
	input.tee.simulated == false
}

deny contains msg if {
	not snp_hardware
	msg := sprintf("hardware is %%v (%%v), want AMD SEV-SNP", [object.get(input, "hwmodel", "missing"), object.get(input, ["tee", "kind"], "missing")])
}

deny contains msg if {
	not input.status == "affirming"
	msg := sprintf("token status is %%v, want affirming", [object.get(input, "status", "missing")])
}
`, m.Name, m.Version, keyName, ReleasePackageSNP, set)
}

// writeSimDirectPolicy writes the head of the simulated TEE's release
// policy for a BootDirect image.
func writeSimDirectPolicy(b *bytes.Buffer, m *Manifest, keyName, set string) {
	fmt.Fprintf(b, `# Release policy written by confidant-image build for image %s %s (key %s),
# for the simulated TEE (development only: whoever controls the host
# controls the simulated root): the key is released only to a guest whose
# evidence came from the simulated AMD secure processor and was verified
# against the simulated root, whose appraisal was affirming or warning
# (SeaBIOS has no Secure Boot, which the development appraisal policy
# reports as a warning), whose launch measurement is one of the image's,
# and whose guest policy forbids debugging.
#
# Input: the token's claims. data.key: {"name", "version", "origin"}.
`, m.Name, m.Version, keyName)
	writeSimPolicyCore(b, ReleasePackageSim, set)
	b.WriteString(`
acceptable_status if input.status in {"affirming", "warning"}

deny contains msg if {
	not acceptable_status
	msg := sprintf("token status is %v, want affirming or warning", [object.get(input, "status", "missing")])
}
`)
}

// writeSimUEFIPolicy writes the head of the simulated TEE's release
// policy for a BootUEFI image: as the simulated direct-boot one, but
// affirming only.
func writeSimUEFIPolicy(b *bytes.Buffer, m *Manifest, keyName, set string) {
	fmt.Fprintf(b, `# Release policy written by confidant-image build for image %s %s (key %s),
# a UEFI image with Secure Boot, for the simulated TEE (whoever controls the
# host controls the simulated root, so this is for development and tests of
# the production path): the key is released only to a guest whose evidence
# came from the simulated AMD secure processor and was verified against the
# simulated root, whose appraisal was affirming (a production appraisal
# policy affirms only with Secure Boot on and PCRs 4, 7 and 11 as this image
# predicts; a warning is refused), whose launch measurement (the OVMF
# firmware) is one of the image's, and whose guest policy forbids debugging.
#
# Input: the token's claims. data.key: {"name", "version", "origin"}.
`, m.Name, m.Version, keyName)
	writeSimPolicyCore(b, ReleasePackageSimUEFI, set)
	b.WriteString(`
deny contains msg if {
	not input.status == "affirming"
	msg := sprintf("token status is %v, want affirming", [object.get(input, "status", "missing")])
}
`)
}

// writeSimPolicyCore writes what both simulated-TEE release policies hold
// after their header: the package, the image's measurements and the check
// that the evidence came from the simulated TEE.
func writeSimPolicyCore(b *bytes.Buffer, pkg, set string) {
	fmt.Fprintf(b, `package %s

# The image's launch measurements (hex SHA-384), one per vCPU count.
%s
# simulated holds for verified evidence from the simulated TEE.
simulated if {
	input.tee.kind == "sim-sev-snp"
	input.tee.simulated == true
	startswith(input.hwmodel, %s)
}

deny contains msg if {
	not simulated
	msg := sprintf("hardware is %%v (%%v), want the simulated AMD SEV-SNP", [object.get(input, "hwmodel", "missing"), object.get(input, ["tee", "kind"], "missing")])
}
`, pkg, set, regoString(simHWModel))
}

// regoString quotes s as a Rego string (JSON's syntax).
func regoString(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}

// checkReleasePolicy checks a supplied release policy the way the verifier
// will store it: 1 byte to MaxReleasePolicy of UTF-8 (the admin API carries
// it in a JSON string, which would change other bytes and so its digest).
func checkReleasePolicy(src []byte) error {
	switch {
	case len(src) == 0:
		return fmt.Errorf("%w: the release policy is empty", ErrSpec)
	case len(src) > MaxReleasePolicy:
		return fmt.Errorf("%w: the release policy has %d bytes, the verifier takes at most %d", ErrSpec, len(src), MaxReleasePolicy)
	case !utf8.Valid(src):
		return fmt.Errorf("%w: the release policy is not UTF-8 text", ErrSpec)
	}
	return nil
}

// sha256Hex is the hex SHA-256 of b.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
