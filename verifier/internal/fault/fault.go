// Package fault is the verifier's one mapping from errors to what a client
// sees: an HTTP status, a stable error code (shared/api) and the reasons.
// The HTTP handlers render it, the attestation and release service records
// it as a failed attempt's outcome in the audit log, and the offline
// appraise command prints it. Details that are not the client's business
// (store errors, internal failures) stay out of the reasons: they are only
// logged.
package fault

import (
	"errors"
	"fmt"
	"net/http"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// MaxBearer caps a release request's bearer token (a token is a few KiB).
const MaxBearer = 64 << 10

// Errors of the requests themselves, which the handlers and the services
// produce.
var (
	ErrRateLimited = errors.New("rate limited")
	ErrBadRequest  = errors.New("bad request")
	ErrNotFound    = errors.New("no such endpoint")
	ErrMethod      = errors.New("method not allowed")
	ErrMediaType   = errors.New("unsupported media type")
	ErrNotReady    = errors.New("not ready")
	// ErrOverloaded: the admission queue was full, or the request waited
	// too long for its turn.
	ErrOverloaded = errors.New("overloaded")
	// ErrNoBearer: the release request has no bearer token.
	ErrNoBearer = errors.New("no bearer token")
	// ErrBearerTooLarge: the bearer token is over MaxBearer (no token of
	// ours is); it is refused unread.
	ErrBearerTooLarge = errors.New("bearer token too large")
)

// Classify maps an error to its HTTP status, code and the reasons a client
// may see. It is the one place where errors become error codes.
func Classify(err error) (int, wire.ErrorBody) {
	status, b := classify(err)
	return status, wire.ErrorBody(b)
}

// body is wire.ErrorBody, as a type of this package so that classify's
// table stays terse.
type body wire.ErrorBody

func classify(err error) (int, body) {
	var (
		maxBytes      *http.MaxBytesError
		denied        *appraise.DeniedError
		releaseDenied *release.DeniedError
	)
	switch {
	case errors.As(err, &maxBytes), errors.Is(err, evidence.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, body{wire.CodeTooLarge, appraise.Reasons(err)}
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, body{wire.CodeRateLimited, []string{"too many requests; retry later"}}
	case errors.Is(err, ErrOverloaded):
		return http.StatusServiceUnavailable, body{wire.CodeOverloaded, []string{"the verifier is busy; retry later"}}
	case errors.Is(err, store.ErrFull), errors.Is(err, store.ErrReadOnly):
		// The operator's problem, named (a full disk, a read-only file
		// system); the client retries all the same.
		return http.StatusServiceUnavailable, body{wire.CodeStoreUnavailable, []string{storeCondition(err) + "; retry later"}}
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, body{wire.CodeStoreUnavailable, []string{"the verifier's store is unavailable; retry later"}}
	case errors.Is(err, ErrNotReady):
		return http.StatusServiceUnavailable, body{wire.CodeNotReady, []string{err.Error()}}
	case errors.Is(err, challenge.ErrUnknown):
		return http.StatusUnauthorized, body{wire.CodeNonceUnknown, []string{"the nonce was not issued by this verifier"}}
	case errors.Is(err, challenge.ErrExpired):
		return http.StatusUnauthorized, body{wire.CodeNonceExpired, []string{"the nonce has expired"}}
	case errors.Is(err, challenge.ErrReused):
		return http.StatusUnauthorized, body{wire.CodeNonceReused, []string{"the nonce was already used"}}
	case errors.Is(err, ErrBearerTooLarge):
		return http.StatusUnauthorized, body{wire.CodeInvalidToken, []string{fmt.Sprintf("the bearer token is over %d KiB", MaxBearer>>10)}}
	case errors.Is(err, ErrNoBearer):
		return http.StatusUnauthorized, body{wire.CodeInvalidToken, []string{"no bearer token: send Authorization: Bearer <token from /v1/attest>"}}
	case errors.Is(err, token.ErrAlgorithm):
		return http.StatusUnauthorized, body{wire.CodeInvalidToken, []string{"the token's algorithm is not allowed"}}
	case errors.Is(err, token.ErrInvalid):
		return http.StatusUnauthorized, body{wire.CodeInvalidToken, []string{"the token is not a valid token of this verifier (signature, issuer, audience or validity period)"}}
	case errors.As(err, &releaseDenied):
		return http.StatusForbidden, body{wire.CodeReleaseDenied, releaseDenied.Reasons}
	case errors.Is(err, release.ErrNoRuntimeKey):
		return http.StatusForbidden, body{wire.CodeNoRuntimeKey, []string{err.Error()}}
	case errors.Is(err, release.ErrKeyUnknown):
		return http.StatusNotFound, body{wire.CodeKeyUnknown, []string{"no such key or key version"}}
	case errors.Is(err, release.ErrKeyExists):
		return http.StatusConflict, body{wire.CodeKeyExists, []string{"a key of that name exists"}}
	case errors.Is(err, release.ErrConflict):
		return http.StatusConflict, body{wire.CodeConflict, appraise.Reasons(err)}
	case errors.Is(err, release.ErrInvalidPolicy), errors.Is(err, policy.ErrLoad):
		return http.StatusBadRequest, body{wire.CodeInvalidPolicy, appraise.Reasons(err)}
	case errors.Is(err, release.ErrInvalid):
		return http.StatusBadRequest, body{wire.CodeMalformed, appraise.Reasons(err)}
	case errors.Is(err, release.ErrPolicyEvaluation):
		return http.StatusInternalServerError, body{wire.CodePolicyError, []string{"the release policy failed; see the verifier's log"}}
	case errors.As(err, &denied):
		return http.StatusForbidden, body{wire.CodeDenied, denied.Reasons}
	case errors.Is(err, evidence.ErrMalformed), errors.Is(err, appraise.ErrMalformed), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, body{wire.CodeMalformed, appraise.Reasons(err)}
	case errors.Is(err, policy.ErrEvaluation):
		return http.StatusInternalServerError, body{wire.CodePolicyError, []string{"the appraisal policy failed; see the verifier's log"}}
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, body{wire.CodeNotFound, []string{err.Error()}}
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed, body{wire.CodeMethodNotAllowed, []string{err.Error()}}
	case errors.Is(err, ErrMediaType):
		return http.StatusUnsupportedMediaType, body{wire.CodeMediaType, []string{"a request body must be sent as Content-Type: application/json (charset, if given, utf-8)"}}
	}
	return http.StatusInternalServerError, body{wire.CodeInternal, []string{"internal error; see the verifier's log"}}
}

// storeCondition names the store condition err matches.
func storeCondition(err error) string {
	if errors.Is(err, store.ErrFull) {
		return "the verifier's store is unavailable: its disk is full"
	}
	return "the verifier's store is unavailable: it is read-only"
}
