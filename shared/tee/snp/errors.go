package snp

import "errors"

// Sentinel errors for verification outcomes. Verify may join several of
// them (errors.Join) when more than one validation check fails.
var (
	// ErrMalformed means the report or certificate table cannot be parsed,
	// or the options are invalid.
	ErrMalformed = errors.New("malformed SNP evidence")
	// ErrSignature means the report signature does not verify with the
	// endorsement key certificate.
	ErrSignature = errors.New("SNP report signature invalid")
	// ErrChain means the VCEK/VLEK certificate is missing, malformed, does
	// not chain to a trusted root, belongs to another chip or product line.
	ErrChain = errors.New("SNP certificate chain invalid")
	// ErrTCBMismatch means the reported TCB is not the TCB the endorsement key
	// certificate was issued for, or is above the current TCB.
	ErrTCBMismatch = errors.New("SNP TCB does not match the endorsement key")
	// ErrCommittedTCB means the committed TCB is above the current TCB in
	// some component, or the committed firmware version is above the
	// current one: no genuine platform reports that. (A current TCB above
	// the committed one is normal and accepted.)
	ErrCommittedTCB = errors.New("SNP committed TCB above current TCB")
	// ErrDebug means the guest policy allows debugging and Options.AllowDebug
	// is false.
	ErrDebug = errors.New("SNP guest policy allows debugging")
	// ErrMigrationAgent means the guest policy allows a migration agent and
	// Options.AllowMigrationAgent is false.
	ErrMigrationAgent = errors.New("SNP guest policy allows a migration agent")
	// ErrSMT means SMT is allowed by the guest policy or enabled on the
	// platform and Options.AllowSMT is false.
	ErrSMT = errors.New("SNP SMT not allowed")
	// ErrVMPL means the report's VMPL is not the required one.
	ErrVMPL = errors.New("SNP report VMPL not allowed")
	// ErrTCBTooLow means the reported TCB is below Options.MinimumTCB.
	ErrTCBTooLow = errors.New("SNP TCB below minimum")
	// ErrReportVersion means the report version is below the minimum or
	// unsupported.
	ErrReportVersion = errors.New("SNP report version not allowed")
	// ErrReportData means REPORT_DATA is not Options.ReportData.
	ErrReportData = errors.New("SNP REPORT_DATA mismatch")
	// ErrMeasurement means MEASUREMENT is none of Options.Measurements.
	ErrMeasurement = errors.New("SNP measurement mismatch")
)
