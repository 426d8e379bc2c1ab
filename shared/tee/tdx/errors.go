package tdx

import "errors"

// Sentinel errors. Every error Verify returns wraps at least one of them;
// when several checks fail, all of their sentinels are present.
var (
	// ErrMalformed means the bytes are not a well-formed TDX quote of a
	// supported version, or parsing them went wrong.
	ErrMalformed = errors.New("tdx: malformed quote")
	// ErrSignature means a signature in the quote does not verify: the quote
	// signature by the attestation key, the QE report signature by the PCK
	// key, or the QE report data binding the attestation key.
	ErrSignature = errors.New("tdx: invalid signature")
	// ErrChain means the PCK certificate chain does not lead to a trusted
	// root at the verification time, or one of its certificates is revoked.
	ErrChain = errors.New("tdx: untrusted PCK certificate chain")
	// ErrDebug means the TD runs with TD_ATTRIBUTES.DEBUG set and
	// Options.AllowDebug is false.
	ErrDebug = errors.New("tdx: debug TD not allowed")
	// ErrTDAttributes means TD_ATTRIBUTES has a bit set that is not known to
	// be safe (anything but DEBUG, SEPT_VE_DISABLE, PKS and PERFMON).
	ErrTDAttributes = errors.New("tdx: TD attributes not allowed")
	// ErrReportData means REPORT_DATA differs from Options.ReportData.
	ErrReportData = errors.New("tdx: REPORT_DATA mismatch")
	// ErrMRTD means MRTD differs from Options.MRTD.
	ErrMRTD = errors.New("tdx: MRTD mismatch")
	// ErrRTMR means an RTMR differs from its entry in Options.RTMRs.
	ErrRTMR = errors.New("tdx: RTMR mismatch")
	// ErrMRSEAM means MRSEAM differs from Options.MRSEAM.
	ErrMRSEAM = errors.New("tdx: MRSEAM mismatch")
	// ErrXFAM means XFAM differs from Options.XFAM or has its fixed bits
	// wrong.
	ErrXFAM = errors.New("tdx: XFAM not allowed")
	// ErrTCB means the TCB is below Options.MinimumTEETCBSVN, or Intel's
	// collateral does not rate it UpToDate, or Options.RequireUpToDate is
	// set and the status is unknown.
	ErrTCB = errors.New("tdx: TCB not acceptable")
	// ErrCollateral means Intel's collateral (TCB info, QE identity, CRLs)
	// could not be fetched, was invalid or expired, or the quote's QE or
	// TDX module does not match it.
	ErrCollateral = errors.New("tdx: collateral check failed")
)
