// Package appraise turns an evidence envelope into verified claims, a policy
// decision and the claim set of a token.
//
// Order of checks (every failure is collected; none stops the others, so a
// denial lists all of its reasons):
//
//  1. Binding: the hardware report's REPORT_DATA is SHA-512 of the runtime
//     data, read straight from the report before anything is verified. (The
//     nonce in the runtime data is the one the caller redeemed; the vTPM
//     quote's extraData and AK are checked in step 3.)
//  2. The hardware evidence, by the Verifier for its TEE kind (chosen by an
//     explicit switch): signature, certificate chain to a pinned root,
//     product line, TCB consistency, report version.
//  3. The vTPM evidence (required for sev-snp and sim-sev-snp, accepted for
//     tdx): the quote is signed by the AK named in the runtime data, its
//     extraData is SHA-256 of the runtime data, the PCR values match the
//     quoted digest, the event log replays to them.
//  4. Only when all of that holds: the appraisal policy for the kind, over
//     the verified claims, with the reference values as data. It decides
//     debug, migration agent, SMT, VMPL, minimum TCB, measurements, PCRs and
//     secure boot, and returns the verdict.
//
// The hardware verifiers deliberately accept any guest policy bits and
// VMPL: those are facts the policy judges, so that a denial names every
// failed rule.
package appraise

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tpm"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// Sentinel errors.
var (
	// ErrMalformed means the evidence cannot be parsed (HTTP 400).
	ErrMalformed = errors.New("malformed evidence")
	// ErrDenied means a check failed or the policy contraindicated the
	// evidence (HTTP 403). The error is a *DeniedError listing every reason.
	ErrDenied = errors.New("evidence denied")
)

// DeniedError lists every reason evidence was denied. It matches ErrDenied
// and the sentinels of the failed checks.
type DeniedError struct {
	// Reasons are human-readable, one per failed check.
	Reasons []string
	// Policy names the policy that denied, if the policy ran.
	Policy *policy.Policy
	errs   []error
}

func (e *DeniedError) Error() string {
	return "evidence denied: " + strings.Join(e.Reasons, "; ")
}

// Unwrap returns ErrDenied and the underlying errors.
func (e *DeniedError) Unwrap() []error { return append([]error{ErrDenied}, e.errs...) }

// Verifier checks one kind of hardware evidence.
type Verifier interface {
	// Verify checks the envelope's hardware report against reportData (the
	// REPORT_DATA it must carry) and returns the verified TEE facts.
	Verify(ctx context.Context, env *evidence.Envelope, reportData [64]byte) (*TEE, error)
}

// TEE is what a Verifier established.
type TEE struct {
	// Fields are the verified report fields as a JSON object, with "kind".
	Fields map[string]any
	// HWModel names the hardware for the hwmodel claim.
	HWModel string
	// Debug is true when the guest can be debugged by the host.
	Debug bool
	// Subject is the stable guest identity (the sub claim).
	Subject string
}

// PolicySource returns the current policies (policy.Holder implements it).
type PolicySource interface {
	Current() *policy.Set
}

// Config configures an Appraiser.
type Config struct {
	// Policies are consulted per appraisal. Required.
	Policies PolicySource
	// SimRoot is the simulated TEE root. Nil: sim-sev-snp evidence is
	// always denied.
	SimRoot *x509.Certificate
	// SNPGetter fetches VCEKs from AMD's KDS. Nil: the certificate table
	// must hold the VCEK (no network).
	SNPGetter SNPGetter
	// TDXGetter fetches TDX collateral from Intel's PCS. Nil: offline, the
	// TCB status is "unknown".
	TDXGetter TDXGetter
	// TPMBanks are the PCR banks to verify; nil means sha256.
	TPMBanks []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives debug details; nil discards them.
	Log *slog.Logger
}

// Appraiser appraises evidence.
type Appraiser struct {
	cfg  Config
	snp  Verifier
	sim  Verifier
	tdx  Verifier
	logs *tpm.LogCache // claims extracted from event logs that replayed
}

// New returns an Appraiser.
func New(cfg Config) (*Appraiser, error) {
	if cfg.Policies == nil {
		return nil, errors.New("configuring appraiser: no policies")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// One cache of verified VCEK/VLEK chains serves both SNP kinds: its
	// key includes the roots a chain was verified against.
	chains := snp.NewChainCache(0)
	a := &Appraiser{
		cfg:  cfg,
		snp:  &snpVerifier{kind: evidence.KindSNP, getter: cfg.SNPGetter, now: cfg.Now, chains: chains},
		tdx:  &tdxVerifier{getter: cfg.TDXGetter, now: cfg.Now},
		logs: tpm.NewLogCache(0),
	}
	if cfg.SimRoot != nil {
		a.sim = &snpVerifier{kind: evidence.KindSimSNP, simRoot: cfg.SimRoot, now: cfg.Now, chains: chains}
	}
	return a, nil
}

// verifier picks the Verifier for a kind. A new TEE is one more case.
func (a *Appraiser) verifier(kind evidence.Kind) (v Verifier, tpmRequired bool, err error) {
	switch kind {
	case evidence.KindSNP:
		return a.snp, true, nil
	case evidence.KindSimSNP:
		if a.sim == nil {
			return nil, true, ErrSimulationNotTrusted
		}
		return a.sim, true, nil
	case evidence.KindTDX:
		return a.tdx, false, nil
	}
	return nil, false, fmt.Errorf("TEE kind %q: %w", kind, evidence.ErrUnknownKind)
}

// ErrSimulationNotTrusted means sim-sev-snp evidence arrived at a verifier
// started without a simulated root.
var ErrSimulationNotTrusted = errors.New("simulated TEE evidence is not trusted by this verifier (no simulated root configured)")

// Result is a successful appraisal.
type Result struct {
	// Claims is the token's claim set, without iss/iat/nbf/exp/jti (the
	// issuer stamps those).
	Claims *token.Claims
	// Decision is the policy's decision (Affirming or Warning).
	Decision *policy.Decision
	// Policy is the policy that decided.
	Policy *policy.Policy
	// Reference is the reference values the policy saw.
	Reference *policy.ReferenceValues
}

// Appraise checks env, whose runtime data rd was parsed by the caller (who
// also redeemed rd.Nonce, or deliberately did not, offline). audience is
// the token's aud. Failures are ErrMalformed, a *DeniedError (ErrDenied)
// or, for a broken policy, policy.ErrEvaluation.
func (a *Appraiser) Appraise(ctx context.Context, env *evidence.Envelope, rd *evidence.RuntimeData, audience []string) (*Result, error) {
	v, tpmRequired, err := a.verifier(env.TEE)
	if err != nil {
		return nil, denied(nil, err)
	}
	var failures []error

	// 1. Binding, read from the raw report before anything else.
	reportData := evidence.ReportData(env.RuntimeData)
	bindingErr := checkReportData(env, reportData)
	if bindingErr != nil {
		failures = append(failures, bindingErr)
	}

	// 2. Hardware evidence.
	tee, err := v.Verify(ctx, env, reportData)
	if err != nil {
		for _, e := range splitErrors(err) {
			if bindingErr != nil && isReportDataErr(e) {
				continue // already reported by the binding check
			}
			failures = append(failures, e)
		}
	}

	// 3. vTPM evidence.
	var tpmClaims *tpm.Claims
	switch {
	case len(env.TPM) == 0 && tpmRequired:
		failures = append(failures, fmt.Errorf("%w: %s evidence must include vTPM evidence", ErrTPMRequired, env.TEE))
	case len(env.TPM) > 0:
		tpmClaims, err = a.verifyTPM(env, rd)
		if err != nil {
			failures = append(failures, splitErrors(err)...)
		}
	}
	if len(failures) > 0 {
		return nil, denied(nil, failures...)
	}

	// 4. Policy.
	set := a.cfg.Policies.Current()
	p, err := set.For(string(env.TEE))
	if err != nil {
		return nil, denied(nil, err)
	}
	input, err := buildInput(env.TEE, tee, tpmClaims, rd)
	if err != nil {
		return nil, err
	}
	input["now"] = a.cfg.Now().UnixNano() // the policy's only clock (policy package doc)
	d, err := p.Evaluate(ctx, input)
	if err != nil {
		return nil, err
	}
	if !d.Allowed() {
		reasons := d.Reasons
		de := &DeniedError{Reasons: reasons, Policy: p, errs: []error{ErrPolicyDenied}}
		return nil, de
	}
	claims, err := buildClaims(env, rd, tee, tpmClaims, d, p, set.Reference, audience)
	if err != nil {
		return nil, err
	}
	return &Result{Claims: claims, Decision: d, Policy: p, Reference: set.Reference}, nil
}

// More sentinels, matched through DeniedError.
var (
	// ErrBinding means the report does not carry SHA-512 of the runtime
	// data.
	ErrBinding = errors.New("REPORT_DATA is not SHA-512 of the runtime data")
	// ErrTPMRequired means vTPM evidence is missing where it is required.
	ErrTPMRequired = errors.New("vTPM evidence required")
	// ErrPolicyDenied means the policy's verdict is contraindicated.
	ErrPolicyDenied = errors.New("appraisal policy denied the evidence")
)

func denied(p *policy.Policy, errs ...error) *DeniedError {
	de := &DeniedError{Policy: p, errs: errs}
	for _, e := range errs {
		de.Reasons = append(de.Reasons, e.Error())
	}
	return de
}

// splitErrors flattens errors.Join trees so that each failed check becomes
// one reason. Only joins are split: an error wrapping several others with
// fmt.Errorf keeps its own message.
func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && isJoin(err) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// isJoin reports whether err was made by errors.Join, by its type (the
// standard library's, unexported): fmt.Errorf with several %w also unwraps
// to a list, but is one error with its own message.
func isJoin(err error) bool {
	return reflect.TypeOf(err) == reflect.TypeOf(errors.Join(ErrPolicyDenied))
}

// Reasons lists every failed check an error stands for: the reasons of a
// *DeniedError, or the parts of an errors.Join.
func Reasons(err error) []string {
	var de *DeniedError
	if errors.As(err, &de) {
		return slices.Clone(de.Reasons)
	}
	var out []string
	for _, e := range splitErrors(err) {
		out = append(out, e.Error())
	}
	return out
}

// wrapEach splits err into its checks and prefixes each with the action.
func wrapEach(action string, err error) error {
	parts := splitErrors(err)
	out := make([]error, len(parts))
	for i, p := range parts {
		out[i] = fmt.Errorf("%s: %w", action, p)
	}
	return errors.Join(out...)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (a *Appraiser) verifyTPM(env *evidence.Envelope, rd *evidence.RuntimeData) (*tpm.Claims, error) {
	ak, err := rd.AKPublic()
	if err != nil {
		return nil, fmt.Errorf("%w: runtime data AK: %w", ErrMalformed, err)
	}
	extra := evidence.TPMNonce(env.RuntimeData)
	c, err := tpm.Verify(env.TPM, ak, extra[:], tpm.Options{Now: a.cfg.Now, Banks: a.cfg.TPMBanks, LogCache: a.logs})
	if err != nil {
		return nil, wrapEach("verifying vTPM evidence", err)
	}
	return c, nil
}

// buildInput makes the policy input: the verified TEE fields, the verified
// vTPM facts and the runtime data's workload.
func buildInput(kind evidence.Kind, tee *TEE, tc *tpm.Claims, rd *evidence.RuntimeData) (map[string]any, error) {
	in := map[string]any{
		"kind": string(kind),
		"tee":  tee.Fields,
	}
	if tc != nil {
		m, err := jsonObject(tc)
		if err != nil {
			return nil, fmt.Errorf("building policy input: %w", err)
		}
		in["tpm"] = m
	}
	rt := map[string]any{}
	if len(rd.Workload) > 0 {
		w, err := jsonObject(rd.Workload)
		if err != nil {
			return nil, fmt.Errorf("building policy input: %w", err)
		}
		rt["workload"] = w
	}
	in["runtime"] = rt
	return in, nil
}

// jsonObject round-trips v through JSON into a map with json.Number
// numbers, the form OPA expects.
func jsonObject(v any) (map[string]any, error) {
	b, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func buildClaims(env *evidence.Envelope, rd *evidence.RuntimeData, tee *TEE, tc *tpm.Claims,
	d *policy.Decision, p *policy.Policy, ref *policy.ReferenceValues, audience []string) (*token.Claims, error) {
	rk, err := rd.RuntimeKeyJWK()
	if err != nil {
		return nil, fmt.Errorf("%w: runtime key: %w", ErrMalformed, err)
	}
	rkJSON, err := json.Marshal(rk)
	if err != nil {
		return nil, fmt.Errorf("encoding runtime key: %w", err)
	}
	c := &token.Claims{
		Subject:    tee.Subject,
		Audience:   token.Audience(slices.Clone(audience)),
		EATProfile: token.EATProfile,
		EATNonce:   b64(rd.Nonce),
		HWModel:    tee.HWModel,
		DbgStat:    token.DbgDisabledPermanently,
		Status:     d.Verdict,
		TEE:        tee.Fields,
		Runtime: token.Runtime{
			Keys: json.RawMessage(`{"keys":[` + string(rkJSON) + `]}`),
			Data: rd.Workload,
		},
		Policy: token.Policy{ID: p.ID, SHA256: p.SHA256, ReferenceSHA256: ref.SHA256},
		Extra:  map[string]any{},
	}
	if tee.Debug {
		c.DbgStat = token.DbgEnabled
	}
	if tc != nil {
		c.SecBoot = tc.SecureBoot.Known && tc.SecureBoot.Enabled
		c.TPM = &token.TPM{PCRs: map[string]map[string]string{}, AKThumbprint: tc.AKThumbprint}
		for bank, pcrs := range tc.PCRs {
			m := map[string]string{}
			for i, v := range pcrs {
				// A PCR never extended is left out: "absent means
				// never extended" (verifier/README.md), a fifth of a
				// token smaller.
				if !tpm.NeverExtended(i, v) {
					m[strconv.Itoa(i)] = v
				}
			}
			c.TPM.PCRs[bank] = m
		}
	}
	for name, v := range d.Claims {
		if name == "swname" {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%w: policy %s: swname is not a string", policy.ErrEvaluation, p.ID)
			}
			c.SWName = s
			continue
		}
		c.Extra[name] = v
	}
	if len(c.Extra) == 0 {
		c.Extra = nil
	}
	return c, nil
}
