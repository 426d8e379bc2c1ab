package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// DefaultMinimumVersion is the lowest report version accepted when
// Options.MinimumVersion is zero.
const DefaultMinimumVersion = abi.ReportVersion2

// MaxCertTableSize caps the certificate table Verify parses.
const MaxCertTableSize = 64 << 10

// Options say what Verify trusts and requires. The zero value verifies the
// chain and signature offline against AMD's embedded roots and rejects
// debug, migration agents, SMT and any VMPL other than 0.
type Options struct {
	// SimRoot, if non-nil, is the simulated ARK (confidant's simulated AMD
	// secure processor). It is then the only root trusted for the call: the
	// ASK must be in the certificate table and chain to it, AMD's roots are
	// not consulted, the network is never used, and Claims.Simulated is
	// true. Simulated reports must be VCEK-signed. Nil: only AMD's
	// production ARK/ASK/ASVK for Milan, Genoa and Turin, embedded in
	// go-sev-guest, are trusted.
	SimRoot *x509.Certificate
	// Getter fetches a missing VCEK (and ASK/ARK) from AMD's KDS. Nil: the
	// network is never used and the certificate table must hold the VCEK or
	// VLEK. Ignored when SimRoot is set.
	Getter trust.HTTPSGetter
	// Now returns the time at which certificates must be valid. Nil:
	// time.Now.
	Now func() time.Time
	// ReportData is the required REPORT_DATA (64 bytes). Nil: not checked.
	// A verifier always sets it, to SHA-512 of the runtime data.
	ReportData []byte
	// Measurements are the accepted MEASUREMENT values (48 bytes each); the
	// report must match one. Nil: not checked (the verifier checks
	// measurements against reference values through Claims); non-nil but
	// empty rejects every report.
	Measurements [][]byte
	// AllowDebug accepts a guest policy that allows debugging. False:
	// rejected (ErrDebug).
	AllowDebug bool
	// AllowMigrationAgent accepts a guest policy that allows a migration
	// agent. False: rejected (ErrMigrationAgent).
	AllowMigrationAgent bool
	// AllowSMT accepts a guest policy that allows SMT and a platform with
	// SMT enabled. False: rejected (ErrSMT). Most real hosts run with SMT
	// enabled and launch guests with the SMT policy bit set, so production
	// policies usually need this true.
	AllowSMT bool
	// VMPL is the required VMPL (0-3). Nil: VMPL 0 is required.
	VMPL *int
	// MinimumTCB is the component-wise minimum of the reported TCB. Zero:
	// not checked.
	MinimumTCB kds.TCBParts
	// MinimumVersion is the lowest accepted report version. Zero:
	// DefaultMinimumVersion (2).
	MinimumVersion uint32
	// Product is the required product line: "Milan", "Genoa" or "Turin".
	// Empty: any of them, as determined from the report (version 3 and
	// later) or the VCEK; the chain must always be the one of that product
	// line.
	Product string
	// ChainCache remembers endorsement key certificates whose chain has
	// been verified, so that the chain's signatures are checked once per
	// certificate (see ChainCache for what every call still checks). Only
	// certificates carried in the certificate table are cached, never ones
	// fetched with Getter. Nil: the chain is verified on every call.
	ChainCache *ChainCache
}

func (o *Options) check() error {
	var errs []error
	if o.ReportData != nil && len(o.ReportData) != abi.ReportDataSize {
		errs = append(errs, fmt.Errorf("report data is %d bytes, want %d", len(o.ReportData), abi.ReportDataSize))
	}
	for i, m := range o.Measurements {
		if len(m) != abi.MeasurementSize {
			errs = append(errs, fmt.Errorf("measurement %d is %d bytes, want %d", i, len(m), abi.MeasurementSize))
		}
	}
	if o.VMPL != nil && (*o.VMPL < 0 || *o.VMPL > 3) {
		errs = append(errs, fmt.Errorf("VMPL %d is not 0-3", *o.VMPL))
	}
	switch o.Product {
	case "", "Milan", "Genoa", "Turin":
	default:
		errs = append(errs, fmt.Errorf("unknown product line %q", o.Product))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: invalid options: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// Verify checks an SNP attestation report (abi.ReportSize bytes) and its
// certificate table (the GHCB extended-report GUID table; may be empty when
// Options.Getter is set) and returns the verified claims.
//
// In order: the report and table parse; the report version is supported and
// at least the minimum (ErrReportVersion); the VCEK/VLEK chains to a trusted
// root for the report's product line and signs the report (ErrChain,
// ErrSignature); the reported TCB equals the certificate's TCB and is at
// most the current TCB (ErrTCBMismatch); the committed TCB and firmware are
// at most the current ones (ErrCommittedTCB; a newer current TCB is normal,
// see checkTCB). Then every
// validation check runs and all failures are joined: debug, migration agent,
// SMT, VMPL, minimum TCB, REPORT_DATA, measurement.
func Verify(report, certTable []byte, opts Options) (claims *Claims, err error) {
	defer func() {
		if p := recover(); p != nil {
			claims, err = nil, fmt.Errorf("%w: verifying SNP report: panic: %v", ErrMalformed, p)
		}
	}()
	if err := opts.check(); err != nil {
		return nil, err
	}
	if len(report) != abi.ReportSize {
		return nil, fmt.Errorf("%w: SNP report is %d bytes, want %d", ErrMalformed, len(report), abi.ReportSize)
	}
	version := binary.LittleEndian.Uint32(report[0:4])
	minVersion := opts.MinimumVersion
	if minVersion == 0 {
		minVersion = DefaultMinimumVersion
	}
	if version < minVersion || version < abi.MinSupportedReportVersion || version > abi.MaxSupportedReportVersion {
		return nil, fmt.Errorf("%w: version %d, want %d to %d", ErrReportVersion, version,
			max(minVersion, abi.MinSupportedReportVersion), abi.MaxSupportedReportVersion)
	}
	r, err := abi.ReportToProto(report)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing SNP report: %w", ErrMalformed, err)
	}
	if algo := abi.SignatureAlgo(report); algo != abi.SignEcdsaP384Sha384 {
		return nil, fmt.Errorf("%w: unknown signature algorithm %d", ErrSignature, algo)
	}
	info, err := abi.ParseSignerInfo(r.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("%w: parsing signer info: %w", ErrMalformed, err)
	}
	if info.SigningKey != abi.VcekReportSigner && info.SigningKey != abi.VlekReportSigner {
		return nil, fmt.Errorf("%w: report signed by %v, want VCEK or VLEK", ErrSignature, info.SigningKey)
	}
	table, err := parseCertTable(certTable)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing certificate table: %w", ErrMalformed, err)
	}
	chain := chainProto(table)
	simulated := opts.SimRoot != nil
	fetch := opts.Getter != nil && !simulated
	if len(endorsementKeyDER(chain, info.SigningKey)) == 0 && !fetch {
		return nil, fmt.Errorf("%w: certificate table has no %v certificate", ErrChain, info.SigningKey)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	att := &spb.Attestation{Report: r, CertificateChain: chain}
	exts, err := verifyChain(att, info.SigningKey, &opts, fetch, now())
	if err != nil {
		return nil, err
	}
	product := productLine(r, exts, info.SigningKey)
	if opts.Product != "" && product != opts.Product {
		return nil, fmt.Errorf("%w: product line %q, want %q", ErrChain, product, opts.Product)
	}
	if info.SigningKey == abi.VcekReportSigner && !allZero(r.GetChipId()) && !bytes.Equal(r.GetChipId(), exts.HWID[:]) {
		return nil, fmt.Errorf("%w: CHIP_ID %s is not the VCEK's HWID %s", ErrChain,
			hex.EncodeToString(r.GetChipId()), hex.EncodeToString(exts.HWID[:]))
	}
	if err := checkTCB(r, exts.TCBVersion); err != nil {
		return nil, err
	}
	if err := validateReport(r, &opts); err != nil {
		return nil, err
	}
	return newClaims(r, info, product, simulated), nil
}

// verifyChain verifies the endorsement key certificate's chain to the
// trusted roots and the report's signature with it, and returns the
// certificate's extensions. With a ChainCache, a certificate from the table
// whose chain was verified before is taken from the cache; the chain's
// validity at now and the report signature are still checked.
func verifyChain(att *spb.Attestation, key abi.ReportSigner, opts *Options, fetch bool, now time.Time) (*kds.Extensions, error) {
	chain := att.GetCertificateChain()
	ekDER := endorsementKeyDER(chain, key)
	var (
		cacheKey chainKey
		cached   = opts.ChainCache != nil && len(ekDER) > 0
	)
	if cached {
		var reportProduct string
		if fms := att.GetReport().GetCpuid1EaxFms(); fms != 0 {
			reportProduct = kds.ProductLineFromFms(fms)
		}
		cacheKey = chainCacheKey(ekDER, key, reportProduct, opts.SimRoot, chain.GetAskCert())
		if v := opts.ChainCache.get(cacheKey); v != nil {
			if !v.validAt(now) {
				return nil, fmt.Errorf("%w: %v certificate chain is not valid at %s (valid %s to %s)", ErrChain, key,
					now.UTC().Format(time.RFC3339), v.notBefore.UTC().Format(time.RFC3339), v.notAfter.UTC().Format(time.RFC3339))
			}
			if err := verify.SnpProtoReportSignature(att.GetReport(), v.ek); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSignature, err)
			}
			return v.exts, nil
		}
	}
	roots, err := trustedRoots(opts.SimRoot, chain)
	if err != nil {
		return nil, err
	}
	vopts := &verify.Options{
		TrustedRoots:        roots,
		Getter:              opts.Getter,
		Now:                 now,
		DisableCertFetching: !fetch,
	}
	if err := verify.SnpAttestation(att, vopts); err != nil {
		return nil, classifyVerifyError(att.GetReport(), att.GetCertificateChain(), key, roots, now, err)
	}
	ek, err := x509.ParseCertificate(endorsementKeyDER(att.GetCertificateChain(), key))
	if err != nil {
		return nil, fmt.Errorf("%w: parsing %v certificate: %w", ErrChain, key, err)
	}
	exts, err := kds.CertificateExtensions(ek, key)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %v certificate extensions: %w", ErrChain, key, err)
	}
	if cached {
		if v := newVerifiedChain(cacheKey, ek, exts, key, roots, productLine(att.GetReport(), exts, key)); v != nil {
			opts.ChainCache.add(v)
		}
	}
	return exts, nil
}

func endorsementKeyDER(chain *spb.CertificateChain, key abi.ReportSigner) []byte {
	if key == abi.VlekReportSigner {
		return chain.GetVlekCert()
	}
	return chain.GetVcekCert()
}

// classifyVerifyError maps a verify.SnpAttestation failure onto ErrSignature
// (the presented certificate's key does not verify the report) and ErrChain
// (the certificate does not chain to a trusted root, or the signature is
// fine and so the certificate is the problem).
func classifyVerifyError(report *spb.Report, chain *spb.CertificateChain, key abi.ReportSigner, roots map[string][]*trust.AMDRootCerts, now time.Time, err error) error {
	ek, perr := x509.ParseCertificate(endorsementKeyDER(chain, key))
	if perr != nil {
		return fmt.Errorf("%w: %w", ErrChain, err)
	}
	if serr := verify.SnpProtoReportSignature(report, ek); serr != nil {
		if !chainsToRoot(ek, key, roots, now) {
			return fmt.Errorf("%w, %w: %w", ErrSignature, ErrChain, serr)
		}
		return fmt.Errorf("%w: %w", ErrSignature, serr)
	}
	return fmt.Errorf("%w: %w", ErrChain, err)
}

// chainsToRoot reports whether ek chains to any of the roots.
func chainsToRoot(ek *x509.Certificate, key abi.ReportSigner, roots map[string][]*trust.AMDRootCerts, now time.Time) bool {
	for _, list := range roots {
		for _, r := range list {
			vo := r.X509Options(now, key)
			if vo == nil {
				continue
			}
			if _, err := ek.Verify(*vo); err == nil {
				return true
			}
		}
	}
	return false
}

// chainProto sorts the table's entries into go-sev-guest's chain message
// (like abi.CertTable.Proto, without its logging).
func chainProto(table *abi.CertTable) *spb.CertificateChain {
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	for _, e := range table.Entries {
		switch e.GUID.String() {
		case abi.VcekGUID:
			chain.VcekCert = e.RawCert
		case abi.VlekGUID:
			chain.VlekCert = e.RawCert
		case abi.AskGUID:
			chain.AskCert = e.RawCert
		case abi.ArkGUID:
			chain.ArkCert = e.RawCert
		default:
			chain.Extras[e.GUID.String()] = e.RawCert
		}
	}
	return chain
}

// productLine returns the product line from the report's CPUID (version 3
// and later) or the endorsement key certificate.
func productLine(r *spb.Report, exts *kds.Extensions, key abi.ReportSigner) string {
	if fms := r.GetCpuid1EaxFms(); fms != 0 {
		return kds.ProductLineFromFms(fms)
	}
	p, err := kds.ParseProductName(exts.ProductName, key)
	if err != nil {
		return "Unknown"
	}
	return kds.ProductLine(p)
}

// validateReport runs every policy check and joins the failures.
func validateReport(r *spb.Report, opts *Options) error {
	var errs []error
	policy, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return fmt.Errorf("%w: parsing guest policy: %w", ErrMalformed, err)
	}
	if policy.Debug && !opts.AllowDebug {
		errs = append(errs, fmt.Errorf("%w: policy %#x", ErrDebug, r.GetPolicy()))
	}
	if policy.MigrateMA && !opts.AllowMigrationAgent {
		errs = append(errs, fmt.Errorf("%w: policy %#x", ErrMigrationAgent, r.GetPolicy()))
	}
	if !opts.AllowSMT {
		if policy.SMT {
			errs = append(errs, fmt.Errorf("%w: guest policy %#x allows SMT", ErrSMT, r.GetPolicy()))
		} else if decodePlatformInfo(r.GetPlatformInfo()).SMTEnabled {
			errs = append(errs, fmt.Errorf("%w: platform has SMT enabled", ErrSMT))
		}
	}
	wantVMPL := 0
	if opts.VMPL != nil {
		wantVMPL = *opts.VMPL
	}
	if r.GetVmpl() != uint32(wantVMPL) {
		errs = append(errs, fmt.Errorf("%w: VMPL %d, want %d", ErrVMPL, r.GetVmpl(), wantVMPL))
	}
	reported := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	if !kds.TCBPartsLE(opts.MinimumTCB, reported) {
		errs = append(errs, fmt.Errorf("%w: reported TCB %+v, minimum %+v", ErrTCBTooLow, reported, opts.MinimumTCB))
	}
	if opts.ReportData != nil && !bytes.Equal(r.GetReportData(), opts.ReportData) {
		errs = append(errs, fmt.Errorf("%w: got %s", ErrReportData, hex.EncodeToString(r.GetReportData())))
	}
	if opts.Measurements != nil && !containsBytes(opts.Measurements, r.GetMeasurement()) {
		errs = append(errs, fmt.Errorf("%w: got %s", ErrMeasurement, hex.EncodeToString(r.GetMeasurement())))
	}
	return errors.Join(errs...)
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, e := range list {
		if bytes.Equal(e, b) {
			return true
		}
	}
	return false
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

// parseCertTable checks the GUID table's header before handing it to
// go-sev-guest, whose parser does not guard against offset overflow.
func parseCertTable(b []byte) (*abi.CertTable, error) {
	table := new(abi.CertTable)
	if len(b) == 0 {
		return table, nil
	}
	if len(b) > MaxCertTableSize {
		return nil, fmt.Errorf("%d bytes, over the %d byte limit", len(b), MaxCertTableSize)
	}
	type entry struct{ off, n uint64 }
	var entries []entry
	end := 0
	for {
		if len(b)-end < abi.CertTableEntrySize {
			return nil, errors.New("header is not terminated by a zero entry")
		}
		e := b[end : end+abi.CertTableEntrySize]
		end += abi.CertTableEntrySize
		off := uint64(binary.LittleEndian.Uint32(e[abi.GUIDSize:]))
		n := uint64(binary.LittleEndian.Uint32(e[abi.GUIDSize+4:]))
		if off == 0 && n == 0 && allZero(e[:abi.GUIDSize]) {
			break
		}
		entries = append(entries, entry{off, n})
	}
	var covered uint64
	for i, e := range entries {
		if e.off < uint64(end) || e.off+e.n > uint64(len(b)) {
			return nil, fmt.Errorf("entry %d (offset %d, length %d) is outside the data (header %d, total %d bytes)", i, e.off, e.n, end, len(b))
		}
		covered += e.n
	}
	// Entries share no bytes: go-sev-guest copies each one, so overlapping
	// entries would turn a 64 KiB table into tens of megabytes.
	if covered > uint64(len(b)-end) {
		return nil, fmt.Errorf("entries cover %d bytes, more than the %d bytes of data: they overlap", covered, len(b)-end)
	}
	if err := table.Unmarshal(b); err != nil {
		return nil, err
	}
	return table, nil
}
