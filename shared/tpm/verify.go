// Package tpm produces and verifies vTPM evidence: a quote of the PCRs by an
// attestation key (AK), carried with the TCG event log in go-tpm-tools'
// attest.Attestation protobuf.
//
// The guest side is [Attester] (the AK and the quote) and [DecryptKey] (the
// runtime key the verifier encrypts released keys to). The verifier side is
// [Verify], which returns [Claims] only for evidence that passed every check.
//
// TEE evidence (SEV-SNP, TDX) that go-tpm-tools could carry in the same
// message is ignored here: it is verified elsewhere, and the binding between
// the two is the AK, which the caller takes from runtime data covered by the
// TEE report.
package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"
)

// Outcomes of [Verify]. Every error it returns for bad evidence wraps exactly
// one of them; callers branch with errors.Is.
var (
	// ErrMalformed: the attestation (or a structure inside it: AK public
	// area, quote, signature) cannot be decoded, or a required part is
	// missing.
	ErrMalformed = errors.New("malformed TPM attestation")
	// ErrAKMismatch: the AK in the attestation is not the expected AK, or is
	// not a fixedTPM restricted signing key.
	ErrAKMismatch = errors.New("attestation key mismatch")
	// ErrSignature: a quote is not signed by the AK.
	ErrSignature = errors.New("TPM quote signature invalid")
	// ErrNonce: a quote's extraData is not the expected value.
	ErrNonce = errors.New("TPM quote extraData mismatch")
	// ErrPCRDigest: the PCR values carried next to a quote do not match the
	// selection and digest the TPM signed.
	ErrPCRDigest = errors.New("PCR values do not match the quote")
	// ErrEventLog: the event log is missing or empty (unless allowed), cannot
	// be parsed, does not replay to the quoted PCR values, or has no event
	// for a PCR it should explain.
	ErrEventLog = errors.New("TPM event log invalid")
)

// Options tunes [Verify]. The zero value is the strict default.
type Options struct {
	// Now is the clock. A TPM quote carries no wall-clock time (only the
	// TPM's own clock, and for an owner-hierarchy AK obfuscated reset
	// counters), so no check here depends on it today; it is kept so every
	// verifier in the system takes the same injected clock. nil: time.Now.
	Now func() time.Time
	// AllowEmptyEventLog accepts an attestation without an event log, or
	// whose log has no event in a quoted PCR. false: such an attestation is
	// rejected with ErrEventLog. The PCR values are still verified by the
	// quote either way.
	AllowEmptyEventLog bool
	// Banks are the PCR banks that must be quoted, verified and replayed
	// against the event log: "sha1", "sha256" or "sha384". The first one
	// feeds [Claims].Events and [Claims].SecureBoot. nil or empty: sha256
	// only.
	Banks []string
	// LogCache remembers the replays of event logs against verified PCR
	// values (see [LogCache] for why a hit is a replay). nil: every call
	// parses and replays the log and extracts its claims.
	LogCache *LogCache
}

// bankAlgs maps the bank names of Options.Banks to TPM algorithms.
var bankAlgs = map[string]tpm2.Algorithm{
	"sha1":   tpm2.AlgSHA1,
	"sha256": tpm2.AlgSHA256,
	"sha384": tpm2.AlgSHA384,
}

// maxPCRs is the number of PCRs of a TPM (and of go-tpm-tools' PCR digest).
const maxPCRs = 24

// quoteSigAlgs are the quote signature hashes accepted (as go-tpm-tools).
var quoteSigAlgs = []tpm2.Algorithm{tpm2.AlgSHA256, tpm2.AlgSHA384, tpm2.AlgSHA512}

// requiredAKAttrs are the attributes an AK must have: a key that never
// leaves its TPM and signs only data the TPM produced itself (quotes), never
// caller-supplied data that could imitate a quote.
const requiredAKAttrs = tpm2.FlagSign | tpm2.FlagRestricted | tpm2.FlagFixedTPM

// Verify checks the vTPM evidence attestation (a marshalled go-tpm-tools
// attest.Attestation) and returns the verified claims. In order:
//
//   - the AK public area in the attestation decodes and is the same key as
//     ak (the AK named in the runtime data), and is a fixedTPM restricted
//     signing key (ErrAKMismatch);
//   - for each bank in opts.Banks, exactly one quote exists (ErrMalformed),
//     it is signed by ak (ErrSignature), its extraData equals extraData
//     (ErrNonce), and the PCR values carried with it have the quoted
//     selection and digest (ErrPCRDigest);
//   - the event log is present and has events (unless
//     opts.AllowEmptyEventLog), parses, replays to the quoted PCR values of
//     each bank, holds only event types the parser knows, and has events
//     for every quoted PCR among 0-9 and 14 that is not at its reset value
//     (ErrEventLog).
//
// Verify never panics on hostile input: a panic in a dependency becomes
// ErrEventLog (while handling the log) or ErrMalformed.
//
// PCRs outside 0-9 and 14 (PCR 10 holds the IMA boot aggregate, for
// instance) need no event in the log and are reported as quoted; so the
// agent must not extend PCRs 0-9 or 14 itself. SEV-SNP/TDX evidence inside
// the message is ignored.
func Verify(attestation []byte, ak crypto.PublicKey, extraData []byte, opts Options) (claims *Claims, err error) {
	defer func() {
		if r := recover(); r != nil {
			claims, err = nil, fmt.Errorf("verifying TPM attestation: %w: panic: %v", ErrMalformed, r)
		}
	}()
	banks, err := opts.banks()
	if err != nil {
		return nil, err
	}
	if len(extraData) == 0 {
		return nil, fmt.Errorf("verifying TPM attestation: %w: no expected extraData given", ErrNonce)
	}

	var att pb.Attestation
	if err := proto.Unmarshal(attestation, &att); err != nil {
		return nil, fmt.Errorf("decoding attestation: %w: %w", ErrMalformed, err)
	}
	if err := checkAK(att.GetAkPub(), ak); err != nil {
		return nil, err
	}

	claims = &Claims{PCRs: make(map[string]map[int]string, len(banks))}
	quoted := make([]*tpmpb.PCRs, len(banks))
	for i, b := range banks {
		q, err := findQuote(att.GetQuotes(), b.alg)
		if err != nil {
			return nil, fmt.Errorf("finding %s quote: %w", b.name, err)
		}
		if err := checkQuote(q, ak, extraData); err != nil {
			return nil, fmt.Errorf("verifying %s quote: %w", b.name, err)
		}
		quoted[i] = q.GetPcrs()
		claims.PCRs[b.name] = hexPCRs(q.GetPcrs())
	}

	for i, b := range banks {
		res, err := replayLog(att.GetEventLog(), quoted[i], opts.AllowEmptyEventLog, i == 0, opts.LogCache)
		if err != nil {
			return nil, fmt.Errorf("replaying event log against %s PCRs: %w", b.name, err)
		}
		if i == 0 {
			claims.Events, claims.SecureBoot, claims.ExtractionErrors = res.events, res.secureBoot, res.extractionErrors
		}
	}
	if claims.AKThumbprint, err = Thumbprint(ak); err != nil {
		return nil, fmt.Errorf("computing AK thumbprint: %w: %w", ErrAKMismatch, err)
	}
	return claims, nil
}

type bank struct {
	name string
	alg  tpm2.Algorithm
}

func (o Options) banks() ([]bank, error) {
	names := o.Banks
	if len(names) == 0 {
		names = []string{"sha256"}
	}
	out := make([]bank, 0, len(names))
	for i, n := range names {
		alg, ok := bankAlgs[n]
		if !ok {
			return nil, fmt.Errorf("verifying TPM attestation: unsupported PCR bank %q (want sha1, sha256 or sha384)", n)
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("verifying TPM attestation: PCR bank %q listed twice", n)
		}
		out = append(out, bank{name: n, alg: alg})
	}
	return out, nil
}

// checkAK compares the AK public area of the attestation with want.
func checkAK(akPub []byte, want crypto.PublicKey) error {
	if want == nil {
		return fmt.Errorf("checking AK: %w: no expected AK given", ErrAKMismatch)
	}
	if len(akPub) == 0 {
		return fmt.Errorf("checking AK: %w: attestation has no AK public area", ErrMalformed)
	}
	pub, err := tpm2.DecodePublic(akPub)
	if err != nil {
		return fmt.Errorf("decoding AK public area: %w: %w", ErrMalformed, err)
	}
	got, err := pub.Key()
	if err != nil {
		return fmt.Errorf("decoding AK public key: %w: %w", ErrMalformed, err)
	}
	eq, ok := got.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(want) {
		return fmt.Errorf("checking AK: %w: attestation is by another key", ErrAKMismatch)
	}
	if pub.Attributes&requiredAKAttrs != requiredAKAttrs || pub.Attributes&tpm2.FlagDecrypt != 0 {
		return fmt.Errorf("checking AK: %w: not a fixedTPM restricted signing key (attributes %#x)", ErrAKMismatch, uint32(pub.Attributes))
	}
	return nil
}

// findQuote returns the only quote over bank alg.
func findQuote(quotes []*tpmpb.Quote, alg tpm2.Algorithm) (*tpmpb.Quote, error) {
	var found *tpmpb.Quote
	for _, q := range quotes {
		if tpm2.Algorithm(q.GetPcrs().GetHash()) != alg {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: more than one quote for the bank", ErrMalformed)
		}
		found = q
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no quote for the bank", ErrMalformed)
	}
	return found, nil
}

// checkQuote verifies one quote, in an order that gives each failure its
// sentinel. It makes every check of go-tpm-tools' quote.Verify (signature
// scheme and hash, signature, TPMS_GENERATED_VALUE magic and quote tag,
// extraData, PCR selection and digest) and more; it does not call it, which
// would verify the signature a second time.
func checkQuote(q *tpmpb.Quote, ak crypto.PublicKey, extraData []byte) error {
	hash, err := checkSignature(q.GetQuote(), q.GetRawSig(), ak)
	if err != nil {
		return err
	}
	ad, err := tpm2.DecodeAttestationData(q.GetQuote())
	if err != nil {
		return fmt.Errorf("decoding quoted data: %w: %w", ErrMalformed, err)
	}
	if ad.Type != tpm2.TagAttestQuote || ad.AttestedQuoteInfo == nil {
		return fmt.Errorf("decoding quoted data: %w: signed data is not a quote (tag %#x)", ErrMalformed, uint16(ad.Type))
	}
	if subtle.ConstantTimeCompare(ad.ExtraData, extraData) != 1 {
		return fmt.Errorf("comparing extraData: %w", ErrNonce)
	}
	return checkPCRDigest(ad.AttestedQuoteInfo, q.GetPcrs(), hash)
}

// checkSignature verifies sig over quoted with ak and returns the signature
// hash, which is also the hash of the quoted PCR digest.
func checkSignature(quoted, rawSig []byte, ak crypto.PublicKey) (crypto.Hash, error) {
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(rawSig))
	if err != nil {
		return 0, fmt.Errorf("decoding quote signature: %w: %w", ErrMalformed, err)
	}
	var alg tpm2.Algorithm
	switch {
	case sig.ECC != nil:
		alg = sig.ECC.HashAlg
	case sig.RSA != nil:
		alg = sig.RSA.HashAlg
	default:
		return 0, fmt.Errorf("decoding quote signature: %w: no signature", ErrMalformed)
	}
	if !slices.Contains(quoteSigAlgs, alg) {
		return 0, fmt.Errorf("checking quote signature: %w: hash %v not allowed", ErrSignature, alg)
	}
	hash, err := alg.Hash()
	if err != nil {
		return 0, fmt.Errorf("checking quote signature: %w: %w", ErrSignature, err)
	}
	h := hash.New()
	h.Write(quoted)
	digest := h.Sum(nil)
	ok := false
	switch pub := ak.(type) {
	case *ecdsa.PublicKey:
		ok = sig.Alg == tpm2.AlgECDSA && sig.ECC != nil && sig.ECC.R != nil && sig.ECC.S != nil &&
			ecdsa.Verify(pub, digest, sig.ECC.R, sig.ECC.S)
	case *rsa.PublicKey:
		ok = sig.Alg == tpm2.AlgRSASSA && sig.RSA != nil &&
			rsa.VerifyPKCS1v15(pub, hash, digest, sig.RSA.Signature) == nil
	default:
		return 0, fmt.Errorf("checking quote signature: %w: unsupported AK type %T", ErrAKMismatch, ak)
	}
	if !ok {
		return 0, fmt.Errorf("checking quote signature: %w", ErrSignature)
	}
	return hash, nil
}

// checkPCRDigest compares the carried PCR values with the signed selection
// and digest (TPM2_Quote hashes the selected PCRs in ascending order with
// the signature's hash).
func checkPCRDigest(info *tpm2.QuoteInfo, pcrs *tpmpb.PCRs, hash crypto.Hash) error {
	if pcrs == nil {
		return fmt.Errorf("checking PCR digest: %w: quote carries no PCR values", ErrMalformed)
	}
	if tpm2.Algorithm(pcrs.GetHash()) != info.PCRSelection.Hash {
		return fmt.Errorf("checking PCR digest: %w: PCR bank differs from the quoted bank", ErrPCRDigest)
	}
	sel := slices.Clone(info.PCRSelection.PCRs)
	slices.Sort(sel)
	sel = slices.Compact(sel)
	if len(sel) != len(pcrs.GetPcrs()) {
		return fmt.Errorf("checking PCR digest: %w: PCR selection differs from the quoted selection", ErrPCRDigest)
	}
	h := hash.New()
	for _, idx := range sel {
		v, ok := pcrs.GetPcrs()[uint32(idx)]
		// A TPM has 24 PCRs; go-tpm-tools leaves any other out of the
		// digest, so such a quote never verified.
		if !ok || idx < 0 || idx >= maxPCRs {
			return fmt.Errorf("checking PCR digest: %w: PCR %d is quoted but not carried", ErrPCRDigest, idx)
		}
		h.Write(v)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), info.PCRDigest) != 1 {
		return fmt.Errorf("checking PCR digest: %w", ErrPCRDigest)
	}
	return nil
}
