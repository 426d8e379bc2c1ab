package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

// MaxReleaseBody caps the body of a release request ({"version": N}).
const MaxReleaseBody = 4 << 10

// ReleaseRequest is the optional body of POST /v1/keys/{name}/release
// (shared/api).
type ReleaseRequest = wire.ReleaseRequest

// ReleaseResponse is the body of a successful release (shared/api).
type ReleaseResponse = wire.ReleaseResponse

// ParseReleaseRequest reads the optional release body: empty, or one JSON
// object {"version": N} with N ≥ 0 and nothing else.
func ParseReleaseRequest(body []byte) (ReleaseRequest, error) {
	var req ReleaseRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: release request: %v", fault.ErrBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: release request: trailing data", fault.ErrBadRequest)
	}
	if req.Version < 0 {
		return req, fmt.Errorf("%w: release request: version %d", fault.ErrBadRequest, req.Version)
	}
	return req, nil
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fault.ErrNoBearer
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fault.ErrNoBearer
	}
	if len(tok) > fault.MaxBearer {
		return "", fault.ErrBearerTooLarge
	}
	return tok, nil
}

// release answers POST /v1/keys/{name}/release: it admits the request,
// reads its body and bearer token and hands them to the release service
// (attest.Service.Release), which verifies the token, asks the key's
// release policy and audits. An attempt refused here (a body over the
// limit, no bearer token, a malformed body) is audited there too
// (attest.Service.RefuseRelease).
func (h *handler) release(w http.ResponseWriter, r *http.Request) {
	req := attest.KeyRequest{Name: chi.URLParam(r, "name"), Remote: remoteHost(r), Time: time.Now().UTC()}
	refuse := func(err error) { h.writeError(w, r, h.Service.RefuseRelease(r.Context(), req, err)) }
	t, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer t.close()
	req.Done = t.done
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReleaseBody+1))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if len(body) > MaxReleaseBody {
		refuse(&http.MaxBytesError{Limit: MaxReleaseBody})
		return
	}
	if !h.process(w, r, t) {
		return
	}
	if req.Token, err = bearer(r); err != nil {
		refuse(err)
		return
	}
	parsed, err := ParseReleaseRequest(body)
	if err != nil {
		refuse(err)
		return
	}
	req.Version = parsed.Version
	res, err := h.Service.Release(r.Context(), req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ReleaseResponse{JWE: string(res.JWE), Key: res.Name, Version: res.Version})
}
