package tdx

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

// TCB status values of Claims.TCBStatus.
const (
	// TCBStatusUnknown is the status when no collateral was checked.
	TCBStatusUnknown = "unknown"
	// TCBStatusUpToDate is the status when Intel's collateral rates the TDX
	// module, the platform and the QE UpToDate.
	TCBStatusUpToDate = "UpToDate"
)

// TD_ATTRIBUTES bits (Intel TDX module ABI, TD_ATTRIBUTES).
const (
	attrDebug         = uint64(1) << 0
	attrSEPTVEDisable = uint64(1) << 28
	attrMigratable    = uint64(1) << 29
	attrPKS           = uint64(1) << 30
	attrKL            = uint64(1) << 31
	attrPerfmon       = uint64(1) << 63
)

// HexBytes is a byte string that encodes as lower-case hex in JSON and text.
type HexBytes []byte

// MarshalText encodes b as lower-case hex.
func (b HexBytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out, nil
}

// UnmarshalText decodes hex into b.
func (b *HexBytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return fmt.Errorf("decoding hex: %w", err)
	}
	*b = out
	return nil
}

// String returns b as lower-case hex.
func (b HexBytes) String() string { return hex.EncodeToString(b) }

// TDAttributes is TD_ATTRIBUTES, raw and decoded.
type TDAttributes struct {
	// Raw is the 8-byte field as it appears in the quote (little endian).
	Raw HexBytes `json:"hex"`
	// Debug is bit 0: the host can read and write the TD's state.
	Debug bool `json:"debug"`
	// SEPTVEDisable is bit 28: EPT violations are not turned into #VE.
	SEPTVEDisable bool `json:"sept_ve_disable"`
	// Migratable is bit 29: the TD may be migrated.
	Migratable bool `json:"migratable"`
	// PKS is bit 30: supervisor protection keys are enabled.
	PKS bool `json:"pks"`
	// KL is bit 31: Key Locker is enabled.
	KL bool `json:"kl"`
	// Perfmon is bit 63: the TD may use performance monitoring.
	Perfmon bool `json:"perfmon"`
}

func decodeTDAttributes(raw []byte) TDAttributes {
	a := TDAttributes{Raw: clone(raw)}
	if len(raw) != 8 {
		return a
	}
	v := binary.LittleEndian.Uint64(raw)
	a.Debug = v&attrDebug != 0
	a.SEPTVEDisable = v&attrSEPTVEDisable != 0
	a.Migratable = v&attrMigratable != 0
	a.PKS = v&attrPKS != 0
	a.KL = v&attrKL != 0
	a.Perfmon = v&attrPerfmon != 0
	return a
}

// Claims are the fields of a verified TDX quote. Field names in JSON follow
// Intel's register names in snake case.
type Claims struct {
	// QuoteVersion is the quote format version (4).
	QuoteVersion uint16 `json:"quote_version"`
	// QEVendorID identifies the quoting enclave's vendor (Intel's is
	// 939a7233f79c4ca9940a0db3957f0607).
	QEVendorID HexBytes `json:"qe_vendor_id"`
	// QESVN and PCESVN are the security versions of the QE and the PCE from
	// the quote header.
	QESVN  uint16 `json:"qe_svn"`
	PCESVN uint16 `json:"pce_svn"`
	// FMSPC is the platform family from the PCK certificate (6 bytes).
	FMSPC HexBytes `json:"fmspc,omitempty"`
	// TEETCBSVN is TEE_TCB_SVN: the TDX module's security versions.
	TEETCBSVN HexBytes `json:"tee_tcb_svn"`
	// MRSEAM is the measurement of the TDX module.
	MRSEAM HexBytes `json:"mrseam"`
	// MRSignerSEAM is the measurement of the TDX module's signer (zero for
	// Intel's module).
	MRSignerSEAM HexBytes `json:"mrsignerseam"`
	// SEAMAttributes are the TDX module's attributes.
	SEAMAttributes HexBytes `json:"seam_attributes"`
	// TDAttributes is TD_ATTRIBUTES.
	TDAttributes TDAttributes `json:"td_attributes"`
	// XFAM is the extended features the TD may use.
	XFAM HexBytes `json:"xfam"`
	// MRTD is the measurement of the TD's initial contents (the firmware).
	MRTD HexBytes `json:"mrtd"`
	// MRConfigID, MROwner and MROwnerConfig are set by the host when the TD
	// is created.
	MRConfigID    HexBytes `json:"mrconfigid"`
	MROwner       HexBytes `json:"mrowner"`
	MROwnerConfig HexBytes `json:"mrownerconfig"`
	// RTMRs are the four runtime measurement registers, RTMR0 first.
	RTMRs [4]HexBytes `json:"rtmrs"`
	// ReportData is REPORT_DATA, chosen by the TD.
	ReportData HexBytes `json:"report_data"`
	// TCBStatus is Intel's rating of the TCB: TCBStatusUnknown without
	// collateral, TCBStatusUpToDate when collateral was checked.
	TCBStatus string `json:"tcb_status"`
}

func clone(b []byte) HexBytes {
	if b == nil {
		return nil
	}
	return append(HexBytes{}, b...)
}

// claimsFromQuote copies the quote's fields into Claims. The quote must
// have passed abi.CheckQuoteV4 (all fields have their sizes).
func claimsFromQuote(q *pb.QuoteV4) *Claims {
	h := q.GetHeader()
	b := q.GetTdQuoteBody()
	c := &Claims{
		QuoteVersion:   uint16(h.GetVersion()),
		QEVendorID:     clone(h.GetQeVendorId()),
		QESVN:          le16(h.GetQeSvn()),
		PCESVN:         le16(h.GetPceSvn()),
		TEETCBSVN:      clone(b.GetTeeTcbSvn()),
		MRSEAM:         clone(b.GetMrSeam()),
		MRSignerSEAM:   clone(b.GetMrSignerSeam()),
		SEAMAttributes: clone(b.GetSeamAttributes()),
		TDAttributes:   decodeTDAttributes(b.GetTdAttributes()),
		XFAM:           clone(b.GetXfam()),
		MRTD:           clone(b.GetMrTd()),
		MRConfigID:     clone(b.GetMrConfigId()),
		MROwner:        clone(b.GetMrOwner()),
		MROwnerConfig:  clone(b.GetMrOwnerConfig()),
		ReportData:     clone(b.GetReportData()),
		TCBStatus:      TCBStatusUnknown,
	}
	for i, r := range b.GetRtmrs() {
		if i < len(c.RTMRs) {
			c.RTMRs[i] = clone(r)
		}
	}
	return c
}

func le16(b []byte) uint16 {
	if len(b) != 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

// fmspcOf returns the FMSPC from the quote's PCK certificate. Call it only
// on a quote whose chain verified.
func fmspcOf(q *pb.QuoteV4) (HexBytes, error) {
	var fmspc HexBytes
	err := guard("reading FMSPC from the PCK certificate", func() error {
		chain, err := verify.ExtractChainFromQuote(q)
		if err != nil {
			return err
		}
		ext, err := pcs.PckCertificateExtensions(chain.PCKCertificate)
		if err != nil {
			return err
		}
		fmspc, err = hex.DecodeString(ext.FMSPC)
		return err
	})
	return fmspc, err
}
