package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// AttestResponse is the body of a successful POST /v1/attest (shared/api).
type AttestResponse = wire.AttestResponse

func (h *handler) attest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	audience, err := h.audience(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	t, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer t.close()
	body, err := readSized(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !h.process(w, r, t) {
		return
	}
	start := time.Now()
	rec := store.AuditRecord{Time: time.Now().UTC(), Event: "attest", Remote: remoteHost(r)}
	env, err := evidence.Decode(body)
	var rd *evidence.RuntimeData
	if err == nil {
		rec.TEE = string(env.TEE)
		rd, err = evidence.ParseRuntimeData(env.RuntimeData)
	}
	if err != nil {
		// Malformed, but the attempt spends the nonce it names all the
		// same, when that is one this verifier issued.
		n, _ := h.checkNonce(namedNonce(body))
		t.done()
		h.attestFailed(w, r, rec, err, n)
		return
	}
	kind := rec.TEE
	// The nonce's tag and expiry are checked now; it is redeemed at the
	// end, in the transaction that writes the attempt's audit record. So
	// every attempt that names a valid nonce spends it, denied, malformed
	// or not, and a token costs one store write.
	n, err := h.checkNonce(rd.Nonce)
	if err != nil {
		h.metrics.nonceRedemptions.WithLabelValues(redemptionResult(err)).Inc()
		t.done()
		h.attestFailed(w, r, rec, err, nil)
		return
	}
	res, err := h.Appraiser.Appraise(ctx, env, rd, audience)
	h.metrics.appraisalDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	var tok string
	if err == nil {
		tok, err = h.Issuer.Sign(res.Claims)
	}
	// The CPU work is over: free the slot and the buffer before the store
	// write, so that requests waiting for the (group) commit hold neither.
	t.done()
	if err != nil {
		h.attestFailed(w, r, rec, err, n)
		return
	}
	issued := rec
	issued.Outcome, issued.Reasons = res.Decision.Verdict, res.Decision.Reasons
	issued.Subject, issued.TokenID = res.Claims.Subject, res.Claims.ID
	issued.PolicyID, issued.PolicySHA256 = res.Policy.ID, res.Policy.SHA256
	// No token leaves without its audit record, nor with a nonce that was
	// redeemed before: both are written in one transaction. It runs even
	// if the client left, like any attempt's.
	_, err = h.Store.RedeemNonceWithAudit(context.WithoutCancel(ctx), n.id, n.expires, issued)
	h.metrics.nonceRedemptions.WithLabelValues(redemptionResult(err)).Inc()
	if errors.Is(err, store.ErrNonceReused) {
		h.attestFailed(w, r, rec, err, nil)
		return
	}
	if err != nil {
		h.metrics.appraisals.WithLabelValues(kind, "error").Inc()
		h.writeError(w, r, err)
		return
	}
	h.metrics.appraisals.WithLabelValues(kind, res.Decision.Verdict).Inc()
	h.metrics.tokensIssued.WithLabelValues(kind).Inc()
	h.log.Info("token issued", "tee", kind, "sub", res.Claims.Subject, "jti", res.Claims.ID,
		"status", res.Decision.Verdict, "policy", res.Policy.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, AttestResponse{Token: tok})
}

// nonce is the redemption an attestation owes: the nonce's id in the store
// and its expiry.
type nonce struct {
	id      []byte
	expires time.Time
}

// checkNonce checks a nonce's tag and expiry and returns the redemption it
// owes.
func (h *handler) checkNonce(value []byte) (*nonce, error) {
	expires, err := h.Challenge.Check(value)
	if err != nil {
		return nil, err
	}
	return &nonce{id: value[:challenge.RandomSize], expires: expires}, nil
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

// attestFailed audits a failed attestation and answers err. With n (the
// nonce passed its check) the nonce is redeemed in the audit record's
// transaction; when it had been redeemed before, the answer is
// nonce_reused instead. A store failure there is logged, and err answered.
func (h *handler) attestFailed(w http.ResponseWriter, r *http.Request, rec store.AuditRecord, err error, n *nonce) {
	base := rec
	_, body := classify(err)
	verdict := "error"
	var denied *appraise.DeniedError
	if errors.As(err, &denied) {
		verdict = token.Contraindicated
		if denied.Policy != nil {
			rec.PolicyID, rec.PolicySHA256 = denied.Policy.ID, denied.Policy.SHA256
		}
	}
	rec.Outcome, rec.Reasons = body.Error, body.Reasons
	ctx := context.WithoutCancel(r.Context())
	if n != nil {
		_, aerr := h.Store.RedeemNonceWithAudit(ctx, n.id, n.expires, rec)
		h.metrics.nonceRedemptions.WithLabelValues(redemptionResult(aerr)).Inc()
		if errors.Is(aerr, store.ErrNonceReused) {
			// A malformed attempt is answered as malformed whatever its
			// nonce; any other as a replay.
			if body.Error != CodeMalformed {
				err = aerr
			}
			h.attestFailed(w, r, base, err, nil)
			return
		}
		if aerr != nil {
			h.log.Error("writing audit record", "err", aerr)
		}
	} else {
		// No genuine nonce: the attempt proved nothing.
		h.auditFailure(ctx, r, rec)
	}
	if rec.TEE != "" { // an envelope that did not decode was no appraisal
		h.metrics.appraisals.WithLabelValues(rec.TEE, verdict).Inc()
	}
	h.writeError(w, r, err)
}

// readSized reads the request body into a buffer of its declared length
// (no slack, no garbage from growing), or, without a Content-Length, as it
// comes. limitBody has bounded the length, and the request holds an
// admission buffer, which bounds how many such buffers exist. A body that
// does not arrive (cut short, too slow, over the limit) is the client's
// error.
func readSized(r *http.Request) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if r.ContentLength <= 0 {
		b, err = io.ReadAll(r.Body)
	} else {
		b = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading the request body: %w", errBadRequest, err)
	}
	return b, nil
}

// audience reads ?audience= (repeatable); none means the default.
func (h *handler) audience(r *http.Request) ([]string, error) {
	aud := r.URL.Query()["audience"]
	if len(aud) == 0 {
		return []string{h.DefaultAudience}, nil
	}
	if len(aud) > MaxAudiences {
		return nil, fmt.Errorf("%w: %d audiences, at most %d", errBadRequest, len(aud), MaxAudiences)
	}
	for _, a := range aud {
		if a == "" || len(a) > 256 || strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("%w: invalid audience %q", errBadRequest, a)
		}
	}
	slices.Sort(aud)
	return slices.Compact(aud), nil
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
