// Package snp verifies AMD SEV-SNP attestation reports: the report signature,
// the VCEK/VLEK certificate chain up to pinned AMD roots (or, explicitly, a
// simulated root), the TCB the certificate was issued for, and the guest
// policy, VMPL, report version, REPORT_DATA and measurement. It returns the
// verified fields as Claims.
//
// It follows go-sev-guest: the chain and signature are checked with
// verify.SnpAttestation, and the checks are mapped onto sentinel errors
// (ErrSignature, ErrChain, ErrDebug, ...) that callers branch on with
// errors.Is. Verify never panics on hostile bytes and, unless a Getter is
// given, never touches the network. With Options.ChainCache, the chain of an
// endorsement key certificate is verified once and reused (see ChainCache).
package snp
