// Package offline is the security teams' offline tooling: the full
// appraisal of one evidence file without a server (no nonce redemption:
// the nonce is taken from the runtime data), and the inspection of one raw
// hardware report or quote.
package offline

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
)

// AppraiseInput is one offline appraisal.
type AppraiseInput struct {
	// Evidence is the evidence envelope (JSON).
	Evidence []byte
	// PolicyFiles and ReferenceFile are loaded as the server loads them.
	PolicyFiles   []string
	ReferenceFile string
	// Now is the verification time; zero means time.Now.
	Now time.Time
	// SimRoot trusts the simulated TEE root; nil: it is not trusted.
	SimRoot *x509.Certificate
	// Audience is the aud claim to show; empty means none.
	Audience string
	// Reserved names the claims a policy may not add (nil: all allowed).
	Reserved func(string) bool
}

// fixedPolicies is a PolicySource holding one set.
type fixedPolicies struct{ set *policy.Set }

func (f fixedPolicies) Current() *policy.Set { return f.set }

// Appraise runs the full appraisal and returns the claims a token would
// carry, without the token-only claims (iss, iat, nbf, exp, jti). Denials
// are *appraise.DeniedError with every reason.
func Appraise(ctx context.Context, in AppraiseInput) (map[string]any, error) {
	res, err := appraiseResult(ctx, in)
	if err != nil {
		return nil, err
	}
	m, err := res.Claims.Map()
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"iss", "iat", "nbf", "exp", "jti"} {
		delete(m, k)
	}
	if in.Audience == "" {
		delete(m, "aud")
	}
	return m, nil
}

func appraiseResult(ctx context.Context, in AppraiseInput) (*appraise.Result, error) {
	env, err := evidence.Decode(in.Evidence)
	if err != nil {
		return nil, err
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		return nil, err
	}
	set, err := policy.Load(ctx, in.PolicyFiles, in.ReferenceFile, policy.Options{Reserved: in.Reserved})
	if err != nil {
		return nil, err
	}
	now := time.Now
	if !in.Now.IsZero() {
		now = func() time.Time { return in.Now }
	}
	a, err := appraise.New(appraise.Config{Policies: fixedPolicies{set}, SimRoot: in.SimRoot, Now: now})
	if err != nil {
		return nil, err
	}
	var aud []string
	if in.Audience != "" {
		aud = []string{in.Audience}
	}
	return a.Appraise(ctx, env, rd, aud)
}

// Inspection is the result of inspecting one raw report or quote.
type Inspection struct {
	// Kind is "sev-snp", "sim-sev-snp" or "tdx".
	Kind string `json:"kind"`
	// Verified is true when signature and chain verified.
	Verified bool `json:"verified"`
	// Claims are the verified fields (only when Verified).
	Claims any `json:"claims,omitempty"`
	// Unverified holds fields read from the bytes without trusting them,
	// when verification failed.
	Unverified map[string]any `json:"unverified,omitempty"`
	// Reasons say why verification failed.
	Reasons []string `json:"reasons"`
}

// SNPInput is one SNP report to inspect.
type SNPInput struct {
	// Report is the raw report (1184 bytes).
	Report []byte
	// CertTable is the extended-report certificate table, or nil.
	CertTable []byte
	// VCEK is a DER VCEK certificate used when CertTable is nil.
	VCEK []byte
	// SimRoot verifies against the simulated root instead of AMD's.
	SimRoot *x509.Certificate
	// Now is the verification time; zero means time.Now.
	Now time.Time
}

// InspectSNP verifies an SNP report's signature, chain and TCB
// consistency. Guest policy bits and VMPL are reported, not judged: that
// is the appraisal policy's job.
func InspectSNP(in SNPInput) *Inspection {
	out := &Inspection{Kind: string(evidence.KindSNP), Reasons: []string{}}
	if in.SimRoot != nil {
		out.Kind = string(evidence.KindSimSNP)
	}
	table := in.CertTable
	if table == nil && in.VCEK != nil {
		t := abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: in.VCEK}}}
		table = t.Marshal()
	}
	opts := snp.Options{SimRoot: in.SimRoot, AllowDebug: true, AllowMigrationAgent: true, AllowSMT: true}
	if !in.Now.IsZero() {
		opts.Now = func() time.Time { return in.Now }
	}
	if len(in.Report) == abi.ReportSize {
		vmpl := int(binary.LittleEndian.Uint32(in.Report[0x30:]))
		if vmpl <= 3 {
			opts.VMPL = &vmpl
		}
	}
	c, err := snp.Verify(in.Report, table, opts)
	if err != nil {
		out.Reasons = reasons(err)
		out.Unverified = snpFields(in.Report)
		return out
	}
	out.Verified, out.Claims = true, c
	return out
}

// snpFields reads a few fields of an unverified report.
func snpFields(r []byte) map[string]any {
	if len(r) != abi.ReportSize {
		return map[string]any{"size": len(r)}
	}
	le := binary.LittleEndian
	h := hex.EncodeToString
	return map[string]any{
		"version":      le.Uint32(r[0x00:]),
		"policy":       le.Uint64(r[0x08:]),
		"vmpl":         le.Uint32(r[0x30:]),
		"report_data":  h(r[0x50:0x90]),
		"measurement":  h(r[0x90:0xC0]),
		"host_data":    h(r[0xC0:0xE0]),
		"reported_tcb": le.Uint64(r[0x180:]),
		"chip_id":      h(r[0x1A0:0x1E0]),
	}
}

// TDXInput is one TDX quote to inspect.
type TDXInput struct {
	Quote []byte
	// Now is the verification time; zero means time.Now.
	Now time.Time
}

// InspectTDX verifies a TDX quote's signatures and PCK chain offline. The
// TCB status stays "unknown" (no collateral is fetched); DEBUG is reported,
// not judged.
func InspectTDX(in TDXInput) *Inspection {
	out := &Inspection{Kind: string(evidence.KindTDX), Reasons: []string{}}
	opts := tdx.Options{AllowDebug: true}
	if !in.Now.IsZero() {
		opts.Now = func() time.Time { return in.Now }
	}
	c, err := tdx.Verify(in.Quote, opts)
	if err != nil {
		out.Reasons = reasons(err)
		return out
	}
	out.Verified, out.Claims = true, c
	return out
}

// reasons lists the checks an error says failed.
func reasons(err error) []string { return appraise.Reasons(err) }

// parseCert parses a PEM or DER certificate.
func parseCert(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	return x509.ParseCertificate(b)
}
