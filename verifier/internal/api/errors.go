package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// Error codes of the JSON error body, declared in shared/api (the
// contract clients import). They are stable: clients branch on them.
const (
	CodeMalformed        = wire.CodeMalformed
	CodeTooLarge         = wire.CodeTooLarge
	CodeNonceUnknown     = wire.CodeNonceUnknown
	CodeNonceExpired     = wire.CodeNonceExpired
	CodeNonceReused      = wire.CodeNonceReused
	CodeDenied           = wire.CodeDenied
	CodeRateLimited      = wire.CodeRateLimited
	CodeStoreUnavailable = wire.CodeStoreUnavailable
	CodeOverloaded       = wire.CodeOverloaded
	CodeNotReady         = wire.CodeNotReady
	CodePolicyError      = wire.CodePolicyError
	CodeInternal         = wire.CodeInternal
	CodeNotFound         = wire.CodeNotFound
	CodeMethodNotAllowed = wire.CodeMethodNotAllowed
	CodeMediaType        = wire.CodeMediaType
	CodeInvalidToken     = wire.CodeInvalidToken
	CodeReleaseDenied    = wire.CodeReleaseDenied
	CodeNoRuntimeKey     = wire.CodeNoRuntimeKey
	CodeKeyUnknown       = wire.CodeKeyUnknown
	CodeKeyExists        = wire.CodeKeyExists
	CodeConflict         = wire.CodeConflict
	CodeInvalidPolicy    = wire.CodeInvalidPolicy
)

// ErrorBody is the JSON body of every error response: shared/api's, as a
// type of this package so that classify's table stays terse.
type ErrorBody wire.ErrorBody

// Errors the handlers produce themselves.
var (
	errRateLimited = errors.New("rate limited")
	errBadRequest  = errors.New("bad request")
	errNotFound    = errors.New("no such endpoint")
	errMethod      = errors.New("method not allowed")
	errMediaType   = errors.New("unsupported media type")
	errNotReady    = errors.New("not ready")
	// errNoBearer: the release request has no bearer token.
	errNoBearer = errors.New("no bearer token")
	// errBearerTooLarge: the bearer token is over maxBearer (no token of
	// ours is); it is refused unread.
	errBearerTooLarge = errors.New("bearer token too large")
)

// classify maps an error to its HTTP status, code and the reasons a client
// may see. It is the one place where errors become HTTP responses; details
// that are not the client's business (store errors, internal failures) are
// only logged.
func classify(err error) (int, ErrorBody) {
	var (
		maxBytes      *http.MaxBytesError
		denied        *appraise.DeniedError
		releaseDenied *release.DeniedError
	)
	switch {
	case errors.As(err, &maxBytes), errors.Is(err, evidence.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, ErrorBody{CodeTooLarge, appraise.Reasons(err)}
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, ErrorBody{CodeRateLimited, []string{"too many requests; retry later"}}
	case errors.Is(err, errOverloaded):
		return http.StatusServiceUnavailable, ErrorBody{CodeOverloaded, []string{"the verifier is busy; retry later"}}
	case errors.Is(err, store.ErrFull), errors.Is(err, store.ErrReadOnly):
		// The operator's problem, named (a full disk, a read-only file
		// system); the client retries all the same.
		return http.StatusServiceUnavailable, ErrorBody{CodeStoreUnavailable, []string{storeCondition(err) + "; retry later"}}
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
	case errors.Is(err, errBearerTooLarge):
		return http.StatusUnauthorized, ErrorBody{CodeInvalidToken, []string{fmt.Sprintf("the bearer token is over %d KiB", maxBearer>>10)}}
	case errors.Is(err, errNoBearer):
		return http.StatusUnauthorized, ErrorBody{CodeInvalidToken, []string{"no bearer token: send Authorization: Bearer <token from /v1/attest>"}}
	case errors.Is(err, token.ErrAlgorithm):
		return http.StatusUnauthorized, ErrorBody{CodeInvalidToken, []string{"the token's algorithm is not allowed"}}
	case errors.Is(err, token.ErrInvalid):
		return http.StatusUnauthorized, ErrorBody{CodeInvalidToken, []string{"the token is not a valid token of this verifier (signature, issuer, audience or validity period)"}}
	case errors.As(err, &releaseDenied):
		return http.StatusForbidden, ErrorBody{CodeReleaseDenied, releaseDenied.Reasons}
	case errors.Is(err, release.ErrNoRuntimeKey):
		return http.StatusForbidden, ErrorBody{CodeNoRuntimeKey, []string{err.Error()}}
	case errors.Is(err, release.ErrKeyUnknown):
		return http.StatusNotFound, ErrorBody{CodeKeyUnknown, []string{"no such key or key version"}}
	case errors.Is(err, release.ErrKeyExists):
		return http.StatusConflict, ErrorBody{CodeKeyExists, []string{"a key of that name exists"}}
	case errors.Is(err, release.ErrConflict):
		return http.StatusConflict, ErrorBody{CodeConflict, appraise.Reasons(err)}
	case errors.Is(err, release.ErrInvalidPolicy), errors.Is(err, policy.ErrLoad):
		return http.StatusBadRequest, ErrorBody{CodeInvalidPolicy, appraise.Reasons(err)}
	case errors.Is(err, release.ErrInvalid):
		return http.StatusBadRequest, ErrorBody{CodeMalformed, appraise.Reasons(err)}
	case errors.Is(err, release.ErrPolicyEvaluation):
		return http.StatusInternalServerError, ErrorBody{CodePolicyError, []string{"the release policy failed; see the verifier's log"}}
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
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType, ErrorBody{CodeMediaType, []string{"a request body must be sent as Content-Type: application/json (charset, if given, utf-8)"}}
	}
	return http.StatusInternalServerError, ErrorBody{CodeInternal, []string{"internal error; see the verifier's log"}}
}

// base is what writeError needs; the public and the admin handlers embed
// it.
type base struct {
	log     *slog.Logger
	metrics *Metrics
}

// writeError answers with the JSON error body for err, logs it and counts
// it.
func (h *base) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := classify(err)
	h.metrics.errors.WithLabelValues(body.Error).Inc()
	level := slog.LevelInfo
	switch {
	case body.Error == CodeOverloaded:
		level = slog.LevelWarn
	case status >= 500:
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", status, "code", body.Error, "err", err)
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(1))
	case http.StatusUnauthorized:
		if body.Error == CodeInvalidToken {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(5))
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

// storeCondition names the store condition err matches.
func storeCondition(err error) string {
	if errors.Is(err, store.ErrFull) {
		return "the verifier's store is unavailable: its disk is full"
	}
	return "the verifier's store is unavailable: it is read-only"
}
