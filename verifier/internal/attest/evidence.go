package attest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// Evidence is one attestation attempt.
type Evidence struct {
	// Body is the evidence envelope as sent (JSON).
	Body []byte
	// Audience is the token's aud (at least one).
	Audience []string
	// Remote names the client (its IP), for the audit log and its
	// per-client budget.
	Remote string
	// Done, when set, is called once the CPU work is over, before the
	// store write: the caller frees what it holds for it.
	Done func()
}

// Attest appraises one attempt's evidence and returns a signed token.
// Every attempt is audited; an attempt naming a nonce this verifier issued
// spends it, in the store transaction that writes its audit record, and
// the token is returned only once that transaction committed. Errors map
// to their answer with fault.Classify.
func (s *Service) Attest(ctx context.Context, a Evidence) (string, error) {
	start := time.Now()
	rec := store.AuditRecord{Time: time.Now().UTC(), Event: "attest", Remote: a.Remote}
	env, err := evidence.Decode(a.Body)
	var rd *evidence.RuntimeData
	if err == nil {
		rec.TEE = string(env.TEE)
		rd, err = evidence.ParseRuntimeData(env.RuntimeData)
	}
	if err != nil {
		// Malformed, but the attempt spends the nonce it names all the
		// same, when that is one this verifier issued.
		n, _ := s.cfg.Nonces.Claim(namedNonce(a.Body))
		done(a.Done)
		return "", s.attestFailed(ctx, rec, err, n)
	}
	kind := rec.TEE
	// The nonce's tag and expiry are checked now; it is redeemed at the
	// end, in the transaction that writes the attempt's audit record. So
	// every attempt that names a valid nonce spends it, denied, malformed
	// or not, and a token costs one store write.
	n, err := s.cfg.Nonces.Claim(rd.Nonce)
	if err != nil {
		s.metrics.nonceRedemptions.WithLabelValues(redemptionResult(err)).Inc()
		done(a.Done)
		return "", s.attestFailed(ctx, rec, err, nil)
	}
	res, err := s.cfg.Appraiser.Appraise(ctx, env, rd, a.Audience)
	s.metrics.appraisalDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	var tok string
	if err == nil {
		tok, err = s.cfg.Tokens.Sign(res.Claims)
	}
	// The CPU work is over: the caller frees what it holds before the
	// store write, so that requests waiting for the (group) commit hold
	// nothing.
	done(a.Done)
	if err != nil {
		return "", s.attestFailed(ctx, rec, err, n)
	}
	issued := rec
	issued.Outcome, issued.Reasons = res.Decision.Verdict, res.Decision.Reasons
	issued.Subject, issued.TokenID = res.Claims.Subject, res.Claims.ID
	issued.PolicyID, issued.PolicySHA256 = res.Policy.ID, res.Policy.SHA256
	// No token leaves without its audit record, nor with a nonce that was
	// redeemed before: both are written in one transaction. It runs even
	// if the client left, like any attempt's.
	err = s.cfg.Nonces.RedeemWithAudit(context.WithoutCancel(ctx), n, issued)
	s.metrics.nonceRedemptions.WithLabelValues(redemptionResult(err)).Inc()
	if errors.Is(err, store.ErrNonceReused) {
		return "", s.attestFailed(ctx, rec, err, nil)
	}
	if err != nil {
		s.metrics.appraisals.WithLabelValues(kind, "error").Inc()
		return "", err
	}
	s.metrics.appraisals.WithLabelValues(kind, res.Decision.Verdict).Inc()
	s.metrics.tokensIssued.WithLabelValues(kind).Inc()
	s.log.Info("token issued", "tee", kind, "sub", res.Claims.Subject, "jti", res.Claims.ID,
		"status", res.Decision.Verdict, "policy", res.Policy.ID)
	return tok, nil
}

// attestFailed audits a failed attestation and returns the error to
// answer. With n (the nonce passed its check) the nonce is redeemed in the
// audit record's transaction; when it had been redeemed before, the
// attempt proved nothing after all: it is audited as such, and answered
// nonce_reused (a malformed attempt stays malformed). A store failure
// there is logged, and err returned.
func (s *Service) attestFailed(ctx context.Context, rec store.AuditRecord, err error, n *challenge.Claim) error {
	ctx = context.WithoutCancel(ctx)
	if n != nil {
		aerr := s.cfg.Nonces.RedeemWithAudit(ctx, n, attestOutcome(rec, err))
		s.metrics.nonceRedemptions.WithLabelValues(redemptionResult(aerr)).Inc()
		switch {
		case errors.Is(aerr, store.ErrNonceReused):
			if _, body := fault.Classify(err); body.Error != wire.CodeMalformed {
				err = aerr
			}
			n = nil
		case aerr != nil:
			s.log.Error("writing audit record", "err", aerr)
		}
	}
	if n == nil {
		// No genuine nonce: the attempt proved nothing.
		s.auditFailure(ctx, attestOutcome(rec, err))
	}
	if rec.TEE != "" { // an envelope that did not decode was no appraisal
		verdict := "error"
		if errors.As(err, new(*appraise.DeniedError)) {
			verdict = token.Contraindicated
		}
		s.metrics.appraisals.WithLabelValues(rec.TEE, verdict).Inc()
	}
	return err
}

// attestOutcome is rec with err as its outcome: the error code and
// reasons, and the policy that denied.
func attestOutcome(rec store.AuditRecord, err error) store.AuditRecord {
	_, body := fault.Classify(err)
	var denied *appraise.DeniedError
	if errors.As(err, &denied) && denied.Policy != nil {
		rec.PolicyID, rec.PolicySHA256 = denied.Policy.ID, denied.Policy.SHA256
	}
	rec.Outcome, rec.Reasons = body.Error, body.Reasons
	return rec
}

// namedNonce digs the nonce out of an attestation body that did not decode
// strictly — runtime_data (base64url), then its nonce (base64url) — so that
// a malformed attempt spends it too. nil when there is none to be found.
func namedNonce(body []byte) []byte {
	var env struct {
		RuntimeData string `json:"runtime_data"`
	}
	// The first JSON value, whatever follows it.
	if json.NewDecoder(bytes.NewReader(body)).Decode(&env) != nil {
		return nil
	}
	var rd struct {
		Nonce string `json:"nonce"`
	}
	if json.Unmarshal(lenientB64(env.RuntimeData), &rd) != nil {
		return nil
	}
	return lenientB64(rd.Nonce)
}

// lenientB64 decodes base64url or standard base64, padded or not; nil if
// it is neither.
func lenientB64(s string) []byte {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b
	}
	b, _ := base64.RawStdEncoding.DecodeString(s)
	return b
}

func redemptionResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, challenge.ErrUnknown):
		return "unknown"
	case errors.Is(err, challenge.ErrExpired):
		return "expired"
	case errors.Is(err, challenge.ErrReused):
		return "reused"
	}
	return "error"
}
