package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
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

// ErrorBody is the JSON body of every error response (shared/api's).
type ErrorBody wire.ErrorBody

// base is what writeError needs; the public and the admin handlers embed
// it.
type base struct {
	log     *slog.Logger
	metrics *Metrics
}

// writeError answers with the JSON error body for err (fault.Classify, the
// one mapping), logs it and counts it.
func (h *base) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := fault.Classify(err)
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
