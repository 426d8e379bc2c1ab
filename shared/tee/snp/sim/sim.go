// Package sim is the signing side of confidant's simulated AMD secure
// processor: it keeps a simulated ARK → ASK → VCEK certificate chain in a
// directory and signs SEV-SNP attestation reports in go-sev-guest's abi
// layout with the VCEK. The chain has the shape AMD's KDS issues (RSA-PSS
// SHA-384 ARK and ASK with AMD's subject names, a P-384 VCEK with the KDS
// TCB, HWID and product-name extensions), so go-sev-guest's verify accepts
// the reports when, and only when, the simulated ARK is given as trusted
// root (snp.Options.SimRoot).
//
// The simulated platform is a Milan (B0) part with TCB bl 4, tee 0, snp 22,
// microcode 213 (Signer.TCB) and firmware 1.55 build 21. Reports are version
// 3, at the requested VMPL, signed by the VCEK, with CHIP_ID equal to the
// VCEK's HWID.
package sim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// File names inside the signer's directory. Certificates are PEM
// "CERTIFICATE" (0644); keys are PKCS #8 PEM "PRIVATE KEY" (0600).
const (
	ARKCertFile  = "ark.pem"
	ARKKeyFile   = "ark.key"
	ASKCertFile  = "ask.pem"
	ASKKeyFile   = "ask.key"
	VCEKCertFile = "vcek.pem"
	VCEKKeyFile  = "vcek.key"
)

// DefaultPolicy is the guest policy Sign uses when Request.Policy is zero:
// ABI 0.31, SMT allowed, migration agent and debug not allowed (bit 17,
// reserved, is set as the ABI requires).
const DefaultPolicy uint64 = 1<<17 | 1<<16 | 31

// ReportVersion is the version of the reports Sign produces.
const ReportVersion = abi.ReportVersion3

// The simulated platform.
const (
	productLine = "Milan"
	productName = "Milan-B0"
	// CPUID family, model and stepping of Milan B0, in version 3 reports.
	cpuFamily, cpuModel, cpuStepping = 0x19, 0x01, 0x00
	fwMajor, fwMinor, fwBuild        = 1, 55, 21
	rsaBits                          = 2048 // AMD uses 4096; 2048 keeps Create fast for tests
	rootYears                        = 25
	vcekYears                        = 7
)

// simTCB is the TCB of the simulated platform: the reported, current,
// committed and launch TCB of every report, and the TCB in the VCEK. It is
// never modified.
var simTCB = kds.TCBParts{BlSpl: 4, TeeSpl: 0, SnpSpl: 22, UcodeSpl: 213}

// PlatformTCB returns the simulated platform's TCB: what every simulated
// report carries as its reported, current, committed and launch TCB.
func PlatformTCB() kds.TCBParts { return simTCB }

// Signer signs reports with a persisted simulated VCEK.
type Signer struct {
	ark, ask, vcek *x509.Certificate
	vcekKey        *ecdsa.PrivateKey
	tcb            kds.TCBVersion
	chipID         [abi.ChipIDSize]byte
	certTable      []byte
}

// Request is what a report is signed over.
type Request struct {
	// ReportData is REPORT_DATA, chosen by the guest.
	ReportData [abi.ReportDataSize]byte
	// Measurement is the launch digest.
	Measurement [abi.MeasurementSize]byte
	// Policy is the guest policy. Zero: DefaultPolicy. It must be a valid
	// SNP policy (bit 17 set, reserved bits clear). The debug bit is only set
	// when Policy sets it. PLATFORM_INFO reports SMT enabled exactly when
	// the policy allows SMT.
	Policy uint64
	// HostData is HOST_DATA, set by the host at launch.
	HostData [abi.HostDataSize]byte
	// FamilyID and ImageID are the ID block fields.
	FamilyID [abi.FamilyIDSize]byte
	ImageID  [abi.ImageIDSize]byte
	// VMPL is the requesting privilege level, 0-3.
	VMPL uint32
	// GuestSVN is the guest security version number.
	GuestSVN uint32
}

// RootPEM returns the simulated ARK certificate as PEM: the file a verifier
// is given to trust simulated reports.
func (s *Signer) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ark.Raw})
}

// RootCert returns the simulated ARK certificate.
func (s *Signer) RootCert() *x509.Certificate { return s.ark }

// CertTable returns the certificate table (VCEK, ASK, ARK) that Sign
// returns with every report.
func (s *Signer) CertTable() []byte { return bytes.Clone(s.certTable) }

// TCB returns the simulated platform's TCB, as in the VCEK.
func (s *Signer) TCB() kds.TCBParts { return kds.DecomposeTCBVersion(s.tcb) }

// ChipID returns the simulated chip ID (the VCEK's HWID).
func (s *Signer) ChipID() [abi.ChipIDSize]byte { return s.chipID }

// Sign returns a signed version 3 attestation report for req and the
// certificate table (VCEK, ASK, ARK) that lets a verifier check it offline.
// REPORT_ID is random for each report (the simulation keeps no per-guest
// state); REPORT_ID_MA is all ones (no migration agent).
func (s *Signer) Sign(req Request) (report, certTable []byte, err error) {
	policy := req.Policy
	if policy == 0 {
		policy = DefaultPolicy
	}
	p, err := abi.ParseSnpPolicy(policy)
	if err != nil {
		return nil, nil, fmt.Errorf("signing simulated SNP report: guest policy %#x: %w", policy, err)
	}
	if req.VMPL > 3 {
		return nil, nil, fmt.Errorf("signing simulated SNP report: VMPL %d is not 0-3", req.VMPL)
	}
	var reportID [abi.ReportIDSize]byte
	if _, err := rand.Read(reportID[:]); err != nil {
		return nil, nil, fmt.Errorf("signing simulated SNP report: %w", err)
	}
	var platformInfo uint64
	if p.SMT {
		platformInfo |= 1 // SMT enabled
	}
	r := make([]byte, abi.ReportSize)
	le := binary.LittleEndian
	le.PutUint32(r[0x00:], ReportVersion)
	le.PutUint32(r[0x04:], req.GuestSVN)
	le.PutUint64(r[0x08:], policy)
	copy(r[0x10:0x20], req.FamilyID[:])
	copy(r[0x20:0x30], req.ImageID[:])
	le.PutUint32(r[0x30:], req.VMPL)
	le.PutUint32(r[0x34:], abi.SignEcdsaP384Sha384)
	le.PutUint64(r[0x38:], uint64(s.tcb)) // CURRENT_TCB
	le.PutUint64(r[0x40:], platformInfo)
	le.PutUint32(r[0x48:], abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VcekReportSigner}))
	copy(r[0x50:0x90], req.ReportData[:])
	copy(r[0x90:0xC0], req.Measurement[:])
	copy(r[0xC0:0xE0], req.HostData[:])
	copy(r[0x140:0x160], reportID[:])
	copy(r[0x160:0x180], bytes.Repeat([]byte{0xff}, abi.ReportIDMASize)) // no migration agent
	le.PutUint64(r[0x180:], uint64(s.tcb))                               // REPORTED_TCB
	r[0x188], r[0x189], r[0x18A] = cpuFamily, cpuModel, cpuStepping
	copy(r[0x1A0:0x1E0], s.chipID[:])
	le.PutUint64(r[0x1E0:], uint64(s.tcb)) // COMMITTED_TCB
	r[0x1E8], r[0x1E9], r[0x1EA] = fwBuild, fwMinor, fwMajor
	r[0x1EC], r[0x1ED], r[0x1EE] = fwBuild, fwMinor, fwMajor
	le.PutUint64(r[0x1F0:], uint64(s.tcb)) // LAUNCH_TCB
	if err := s.sign(r); err != nil {
		return nil, nil, fmt.Errorf("signing simulated SNP report: %w", err)
	}
	return r, s.CertTable(), nil
}

// Resign signs a caller-built report (abi.ReportSize bytes) as it is,
// replacing its signature. It exists for tests that need reports Sign would
// never produce (wrong TCB, old version, ...); production code uses Sign.
func (s *Signer) Resign(report []byte) ([]byte, error) {
	if len(report) != abi.ReportSize {
		return nil, fmt.Errorf("re-signing simulated SNP report: %d bytes, want %d", len(report), abi.ReportSize)
	}
	r := bytes.Clone(report)
	if err := s.sign(r); err != nil {
		return nil, fmt.Errorf("re-signing simulated SNP report: %w", err)
	}
	return r, nil
}

func (s *Signer) sign(r []byte) error {
	// Zero the whole signature area first (R and S are zero-padded).
	clear(r[len(abi.SignedComponent(r)):])
	digest := crypto.SHA384.New()
	digest.Write(abi.SignedComponent(r))
	sig, err := ecdsa.SignASN1(rand.Reader, s.vcekKey, digest.Sum(nil))
	if err != nil {
		return err
	}
	var parsed struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &parsed); err != nil {
		return err
	}
	return abi.SetSignature(parsed.R, parsed.S, r)
}
