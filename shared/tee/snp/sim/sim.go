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
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/uuid"
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

var allFiles = []string{ARKKeyFile, ASKKeyFile, VCEKKeyFile, ASKCertFile, VCEKCertFile, ARKCertFile}

// Create makes a new simulated chain and writes it to dir (created 0700 if
// missing). It fails if any of the files already exists.
func Create(dir string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating simulated SNP signer directory: %w", err)
	}
	for _, name := range allFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("creating simulated SNP signer: %s: %w", name, fs.ErrExist)
		}
	}
	arkKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating simulated ARK key: %w", err)
	}
	askKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating simulated ASK key: %w", err)
	}
	vcekKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating simulated VCEK key: %w", err)
	}
	var chipID [abi.ChipIDSize]byte
	if _, err := rand.Read(chipID[:]); err != nil {
		return nil, fmt.Errorf("generating simulated chip ID: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ark, err := certify(arkTemplate(now), nil, arkKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated ARK: %w", err)
	}
	ask, err := certify(askTemplate(now), ark, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated ASK: %w", err)
	}
	vt, err := vcekTemplate(now, simTCB, chipID)
	if err != nil {
		return nil, fmt.Errorf("creating simulated VCEK: %w", err)
	}
	vcek, err := certify(vt, ask, &vcekKey.PublicKey, askKey)
	if err != nil {
		return nil, fmt.Errorf("creating simulated VCEK: %w", err)
	}
	// The ARK certificate is written last: its presence marks a complete
	// directory for LoadOrCreate.
	for _, f := range []struct {
		name string
		key  any
		cert *x509.Certificate
	}{
		{name: ARKKeyFile, key: arkKey},
		{name: ASKKeyFile, key: askKey},
		{name: VCEKKeyFile, key: vcekKey},
		{name: ASKCertFile, cert: ask},
		{name: VCEKCertFile, cert: vcek},
		{name: ARKCertFile, cert: ark},
	} {
		var block *pem.Block
		perm := os.FileMode(0o644)
		if f.key != nil {
			der, err := x509.MarshalPKCS8PrivateKey(f.key)
			if err != nil {
				return nil, fmt.Errorf("encoding %s: %w", f.name, err)
			}
			block, perm = &pem.Block{Type: "PRIVATE KEY", Bytes: der}, 0o600
		} else {
			block = &pem.Block{Type: "CERTIFICATE", Bytes: f.cert.Raw}
		}
		if err := writeNew(filepath.Join(dir, f.name), pem.EncodeToMemory(block), perm); err != nil {
			return nil, fmt.Errorf("creating simulated SNP signer: %w", err)
		}
	}
	return newSigner(ark, ask, vcek, vcekKey)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Load reads a chain made by Create and checks that it is consistent: the
// VCEK key matches the VCEK certificate, the VCEK is signed by the ASK and the
// ASK by the self-signed ARK, and private keys are not readable by group or
// others.
func Load(dir string) (*Signer, error) {
	var certs [3]*x509.Certificate
	for i, name := range []string{ARKCertFile, ASKCertFile, VCEKCertFile} {
		c, err := readCert(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
		}
		certs[i] = c
	}
	ark, ask, vcek := certs[0], certs[1], certs[2]
	key, err := readKey(filepath.Join(dir, VCEKKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
	}
	vcekKey, ok := key.(*ecdsa.PrivateKey)
	if !ok || vcekKey.Curve != elliptic.P384() {
		return nil, fmt.Errorf("loading simulated SNP signer: %s is %T, want a P-384 ECDSA key", VCEKKeyFile, key)
	}
	if !vcekKey.PublicKey.Equal(vcek.PublicKey) {
		return nil, fmt.Errorf("loading simulated SNP signer: %s does not match %s", VCEKKeyFile, VCEKCertFile)
	}
	for _, k := range []string{ARKKeyFile, ASKKeyFile} {
		if err := checkKeyPerm(filepath.Join(dir, k)); err != nil {
			return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
		}
	}
	if err := ark.CheckSignatureFrom(ark); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: ARK is not self-signed: %w", err)
	}
	if err := ask.CheckSignatureFrom(ark); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: ASK is not signed by the ARK: %w", err)
	}
	if err := vcek.CheckSignatureFrom(ask); err != nil {
		return nil, fmt.Errorf("loading simulated SNP signer: VCEK is not signed by the ASK: %w", err)
	}
	return newSigner(ark, ask, vcek, vcekKey)
}

// LoadOrCreate loads the chain in dir, or creates it when dir holds no ARK
// certificate yet.
func LoadOrCreate(dir string) (*Signer, error) {
	_, err := os.Stat(filepath.Join(dir, ARKCertFile))
	switch {
	case err == nil:
		return Load(dir)
	case errors.Is(err, fs.ErrNotExist):
		return Create(dir)
	default:
		return nil, fmt.Errorf("loading simulated SNP signer: %w", err)
	}
}

func newSigner(ark, ask, vcek *x509.Certificate, vcekKey *ecdsa.PrivateKey) (*Signer, error) {
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil {
		return nil, fmt.Errorf("reading simulated VCEK extensions: %w", err)
	}
	s := &Signer{ark: ark, ask: ask, vcek: vcek, vcekKey: vcekKey, tcb: exts.TCBVersion}
	if copy(s.chipID[:], exts.HWID) != abi.ChipIDSize {
		return nil, errors.New("reading simulated VCEK extensions: HWID is not 64 bytes")
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: vcek.Raw},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: ask.Raw},
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: ark.Raw},
	}}
	s.certTable = table.Marshal()
	return s, nil
}

// readPEM reads a file holding exactly one PEM block of type typ and
// returns its bytes.
func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != typ || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: want exactly one PEM %s", path, typ)
	}
	return block.Bytes, nil
}

func readCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func checkKeyPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %v, want no access for group and others", path, fi.Mode().Perm())
	}
	return nil
}

func readKey(path string) (any, error) {
	if err := checkKeyPerm(path); err != nil {
		return nil, err
	}
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
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

func amdName(cn string, serial *big.Int) pkix.Name {
	return pkix.Name{
		Country:            []string{"US"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
		SerialNumber:       fmt.Sprintf("%x", serial),
	}
}

func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func arkTemplate(now time.Time) *x509.Certificate {
	sn := serial()
	return &x509.Certificate{
		Version:               3,
		SerialNumber:          sn,
		Subject:               amdName("ARK-"+productLine, sn),
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(rootYears, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ARK")},
	}
}

func askTemplate(now time.Time) *x509.Certificate {
	sn := serial()
	return &x509.Certificate{
		Version:               3,
		SerialNumber:          sn,
		Subject:               amdName("SEV-"+productLine, sn),
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(rootYears, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ASK")},
	}
}

// vcekTemplate carries the KDS extensions: struct version, product name,
// the TCB security patch levels and the HWID.
func vcekTemplate(now time.Time, tcb kds.TCBParts, hwid [abi.ChipIDSize]byte) (*x509.Certificate, error) {
	var exts []pkix.Extension
	add := func(oid asn1.ObjectIdentifier, v any, params string) error {
		der, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			return err
		}
		exts = append(exts, pkix.Extension{Id: oid, Value: der})
		return nil
	}
	if err := errors.Join(
		add(kds.OidStructVersion, 0, ""),
		add(kds.OidProductName1, productName, "ia5"),
		add(kds.OidBlSpl, int(tcb.BlSpl), ""),
		add(kds.OidTeeSpl, int(tcb.TeeSpl), ""),
		add(kds.OidSnpSpl, int(tcb.SnpSpl), ""),
		add(kds.OidSpl4, int(tcb.Spl4), ""),
		add(kds.OidSpl5, int(tcb.Spl5), ""),
		add(kds.OidSpl6, int(tcb.Spl6), ""),
		add(kds.OidSpl7, int(tcb.Spl7), ""),
		add(kds.OidUcodeSpl, int(tcb.UcodeSpl), ""),
		add(kds.OidHwid, hwid[:], ""),
	); err != nil {
		return nil, err
	}
	sn := serial()
	return &x509.Certificate{
		Version:            3,
		SerialNumber:       sn,
		Subject:            amdName("SEV-VCEK", sn),
		NotBefore:          now.Add(-24 * time.Hour),
		NotAfter:           now.AddDate(vcekYears, 0, 0),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    exts,
	}, nil
}

// certify signs template with signerKey; parent nil means self-signed.
func certify(template, parent *x509.Certificate, pub crypto.PublicKey, signerKey crypto.Signer) (*x509.Certificate, error) {
	if parent == nil {
		parent = template
		pub = signerKey.Public()
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, signerKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
