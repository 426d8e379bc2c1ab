package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// Error codes of the JSON error body. They are stable: clients branch on
// them.
const (
	CodeMalformed        = "malformed_request"
	CodeTooLarge         = "request_too_large"
	CodeNonceUnknown     = "nonce_unknown"
	CodeNonceExpired     = "nonce_expired"
	CodeNonceReused      = "nonce_reused"
	CodeDenied           = "evidence_denied"
	CodeRateLimited      = "rate_limited"
	CodeStoreUnavailable = "store_unavailable"
	CodeNotReady         = "not_ready"
	CodePolicyError      = "policy_error"
	CodeInternal         = "internal_error"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error   string   `json:"error"`
	Reasons []string `json:"reasons"`
}

// Errors the handlers produce themselves.
var (
	errRateLimited = errors.New("rate limited")
	errBadRequest  = errors.New("bad request")
	errNotFound    = errors.New("no such endpoint")
	errMethod      = errors.New("method not allowed")
	errNotReady    = errors.New("not ready")
)

// classify maps an error to its HTTP status, code and the reasons a client
// may see. It is the one place where errors become HTTP responses; details
// that are not the client's business (store errors, internal failures) are
// only logged.
func classify(err error) (int, ErrorBody) {
	var (
		maxBytes *http.MaxBytesError
		denied   *appraise.DeniedError
	)
	switch {
	case errors.As(err, &maxBytes), errors.Is(err, evidence.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, ErrorBody{CodeTooLarge, appraise.Reasons(err)}
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, ErrorBody{CodeRateLimited, []string{"too many requests; retry later"}}
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, ErrorBody{CodeStoreUnavailable, []string{"the verifier's store is unavailable; retry later"}}
	case errors.Is(err, errNotReady):
		return http.StatusServiceUnavailable, ErrorBody{CodeNotReady, []string{err.Error()}}
	case errors.Is(err, challenge.ErrUnknown):
		return http.StatusUnauthorized, ErrorBody{CodeNonceUnknown, []string{"the nonce was not issued by this verifier"}}
	case errors.Is(err, challenge.ErrExpired):
		return http.StatusUnauthorized, ErrorBody{CodeNonceExpired, []string{"the nonce has expired"}}
	case errors.Is(err, challenge.ErrReused):
		return http.StatusUnauthorized, ErrorBody{CodeNonceReused, []string{"the nonce was already used"}}
	case errors.As(err, &denied):
		return http.StatusForbidden, ErrorBody{CodeDenied, denied.Reasons}
	case errors.Is(err, evidence.ErrMalformed), errors.Is(err, appraise.ErrMalformed), errors.Is(err, errBadRequest):
		return http.StatusBadRequest, ErrorBody{CodeMalformed, appraise.Reasons(err)}
	case errors.Is(err, policy.ErrEvaluation):
		return http.StatusInternalServerError, ErrorBody{CodePolicyError, []string{"the appraisal policy failed; see the verifier's log"}}
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, ErrorBody{CodeNotFound, []string{err.Error()}}
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, ErrorBody{CodeMethodNotAllowed, []string{err.Error()}}
	}
	return http.StatusInternalServerError, ErrorBody{CodeInternal, []string{"internal error; see the verifier's log"}}
}

// writeError answers with the JSON error body for err, logs it and counts
// it.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := classify(err)
	h.metrics.errors.WithLabelValues(body.Error).Inc()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", status, "code", body.Error, "err", err)
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(1))
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal_error","reasons":["encoding the response failed"]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
