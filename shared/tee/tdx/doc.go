// Package tdx verifies Intel TDX attestation quotes and turns them into
// claims.
//
// It is built on github.com/google/go-tdx-guest: its abi package parses the
// quote and its verify package checks the signatures, the certificate chain
// and, when asked, Intel's collateral. This package adds what a verifier
// needs on top: one call, an explicit clock and network, checks of the TD
// fields against expected values, sentinel errors to branch on, and a
// recover at the go-tdx-guest boundary so that hostile bytes give an error,
// never a panic.
//
// # Verified offline (no Getter)
//
// Everything below needs only the quote, Options.Now and the trusted root
// (Intel's SGX Root CA, embedded, unless Options.TrustedRoots says
// otherwise):
//
//   - the quote parses as a version 4 ECDSA-P256 TDX quote (TEE type 0x81);
//     version 5 quotes are refused because go-tdx-guest does not parse them
//     yet (ErrMalformed);
//   - the PCK certificate chain carried in the quote (PCK leaf, PCK Platform
//     or Processor CA, root) chains to the trusted root and every certificate
//     is valid at Now (ErrChain);
//   - the QE report is signed by the PCK key, the QE report data binds the
//     attestation key and the QE authentication data, and the quote header
//     and TD quote body are signed by that attestation key (ErrSignature);
//   - TD_ATTRIBUTES: DEBUG is refused unless Options.AllowDebug, and only
//     the bits go-tdx-guest knows to be safe (SEPT_VE_DISABLE, PKS, PERFMON,
//     and DEBUG when allowed) may be set (ErrDebug, ErrTDAttributes);
//   - XFAM has the architecturally fixed bits right (ErrXFAM);
//   - every pinned value in Options: REPORT_DATA, MRTD, RTMR0-3, MRSEAM,
//     XFAM, and TEE_TCB_SVN against a component-wise minimum (ErrReportData,
//     ErrMRTD, ErrRTMR, ErrMRSEAM, ErrXFAM, ErrTCB).
//
// Offline, nothing tells whether the platform's TCB (microcode, SEAM module,
// QE) is current or revoked, so Claims.TCBStatus is "unknown" and
// Options.RequireUpToDate fails with ErrTCB.
//
// # Needs collateral (a Getter)
//
// With Options.Getter set, Verify also fetches from Intel's PCS (or a
// caching service behind the same URLs) the TDX TCB info for the PCK
// certificate's FMSPC, the TDX QE identity, the PCK CRL and the root CA CRL,
// and go-tdx-guest checks: the signatures and validity of the collateral and
// of its signing chain (ErrCollateral); that no certificate of the PCK chain
// is revoked (ErrChain); that MRSIGNERSEAM, SEAM attributes, FMSPC and PCEID
// match the TCB info and that the QE matches the QE identity; and that the
// TCB level of the TDX module, of the platform and of the QE is UpToDate
// (ErrTCB). go-tdx-guest accepts no other TCB status (SWHardeningNeeded,
// ConfigurationNeeded and OutOfDate all fail with ErrTCB), so with a Getter
// a verified quote always has Claims.TCBStatus "UpToDate". Collateral is
// fetched only for a quote whose signatures and chain already verified.
//
// # Errors
//
// Verify reports every failed check at once with errors.Join; each part
// wraps one of the sentinel errors, so errors.Is answers "was the signature
// bad?" and "did MRTD differ?" independently. On any error Verify returns
// nil claims.
package tdx
