package api

import (
	"mime"
	"net/http"
	"strings"

	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

// rateLimit refuses POST requests over the per-client rate (429
// rate_limited). A client is its remote IP: clients behind one proxy or
// NAT — or guests whose traffic hostd relays — share one bucket.
func (h *handler) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.limiter != nil && !h.limiter.Take(remoteHost(r), h.now(), nil) {
			h.writeError(w, r, fault.ErrRateLimited)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSON refuses a request body that is not declared as JSON (415
// unsupported_media_type): a request with a body, or with a Content-Type,
// must say application/json, with no parameter but charset=utf-8. A
// request without a body (the challenge, a release of the latest version)
// may omit Content-Type.
func (h *handler) requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Values("Content-Type")
		if (len(ct) == 0 && r.ContentLength != 0) || len(ct) > 1 || (len(ct) == 1 && !isJSON(ct[0])) {
			h.writeError(w, r, fault.ErrMediaType)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isJSON reports whether a Content-Type value is application/json with at
// most a charset=utf-8 parameter.
func isJSON(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, p := range params {
		if k != "charset" || !strings.EqualFold(p, "utf-8") {
			return false
		}
	}
	return true
}
