package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// MaxReleaseBody caps the body of a release request ({"version": N}).
const MaxReleaseBody = 4 << 10

// maxBearer caps the bearer token (a token is a few KiB).
const maxBearer = 64 << 10

// ReleaseRequest is the optional body of POST /v1/keys/{name}/release
// (shared/api).
type ReleaseRequest = wire.ReleaseRequest

// ReleaseResponse is the body of a successful release (shared/api).
type ReleaseResponse = wire.ReleaseResponse

// Release outcome recorded in the audit log when the key was released.
const outcomeGranted = "granted"

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
		return req, fmt.Errorf("%w: release request: %v", errBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: release request: trailing data", errBadRequest)
	}
	if req.Version < 0 {
		return req, fmt.Errorf("%w: release request: version %d", errBadRequest, req.Version)
	}
	return req, nil
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNoBearer
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errNoBearer
	}
	if len(tok) > maxBearer {
		return "", errBearerTooLarge
	}
	return tok, nil
}

// maxAuditKeyName bounds the escaped form of an invalid key name in the
// audit log.
const maxAuditKeyName = 256

// auditKeyName is a key name as the audit log and the log record it: a
// valid name (release.CheckName) as it is, anything else escaped and
// bounded, so that a name from a request can neither forge a row nor drive
// the terminal of whoever reads the log.
func auditKeyName(name string) string {
	if release.CheckName(name) == nil {
		return name
	}
	return termsafe.Clip(name, maxAuditKeyName)
}

// release answers POST /v1/keys/{name}/release: the bearer token must be
// one this verifier issued, for the release audience, with a runtime key;
// the key's release policy must allow its claims. Every attempt is
// audited; a key leaves only with its audit record written.
func (h *handler) release(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	rec := store.AuditRecord{Time: time.Now().UTC(), Event: "release", KeyName: auditKeyName(name), Remote: remoteHost(r)}
	// t holds the admission; the audit write comes after t.done.
	var t *ticket
	// authed: the token is valid. Attempts without one prove nothing, and
	// their audit rows are limited per client (auditsample.go).
	var authed bool
	fail := func(err error) {
		if t != nil {
			t.done()
		}
		_, body := classify(err)
		var denied *release.DeniedError
		if errors.As(err, &denied) {
			rec.PolicyID, rec.PolicySHA256, rec.KeyVersion = denied.PolicyID, denied.PolicySHA256, denied.Version
		}
		rec.Outcome, rec.Reasons = body.Error, body.Reasons
		if errors.Is(err, release.ErrInvalidName) {
			rec.Reasons = append(slices.Clone(rec.Reasons), "invalid key name (recorded escaped)")
		}
		h.metrics.releases.WithLabelValues(body.Error).Inc()
		if !authed {
			h.auditFailure(context.WithoutCancel(ctx), r, rec)
		} else if _, aerr := h.Store.AppendAudit(context.WithoutCancel(ctx), rec); aerr != nil {
			h.log.Error("writing audit record", "err", aerr)
		}
		h.writeError(w, r, err)
	}
	t, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer t.close()
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReleaseBody+1))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if len(body) > MaxReleaseBody {
		fail(&http.MaxBytesError{Limit: MaxReleaseBody})
		return
	}
	if !h.process(w, r, t) {
		return
	}
	tok, err := bearer(r)
	if err != nil {
		fail(err)
		return
	}
	req, err := ParseReleaseRequest(body)
	if err != nil {
		fail(err)
		return
	}
	rec.KeyVersion = req.Version
	claims, err := h.Issuer.VerifyClaims(ctx, tok, h.ReleaseAudience)
	if err != nil {
		fail(err)
		return
	}
	authed = true
	rec.Subject, _ = claims["sub"].(string)
	rec.TokenID, _ = claims["jti"].(string)
	if tee, ok := claims["tee"].(map[string]any); ok {
		rec.TEE, _ = tee["kind"].(string)
	}
	res, err := h.Release.Release(ctx, release.Request{Name: name, Version: req.Version, Claims: claims})
	if err != nil {
		fail(err)
		return
	}
	rec.Outcome, rec.KeyVersion = outcomeGranted, res.Version
	rec.PolicyID, rec.PolicySHA256 = res.PolicyID, res.PolicySHA256
	rec.Reasons = []string{"release policy allowed"}
	t.done()
	// No key leaves without its audit record.
	if _, err := h.Store.AppendAudit(ctx, rec); err != nil {
		h.metrics.releases.WithLabelValues(CodeStoreUnavailable).Inc()
		h.writeError(w, r, err)
		return
	}
	h.metrics.releases.WithLabelValues(outcomeGranted).Inc()
	h.log.Info("key released", "key", res.Name, "version", res.Version, "sub", rec.Subject, "jti", rec.TokenID,
		"tee", rec.TEE, "policy", res.PolicyID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ReleaseResponse{JWE: string(res.JWE), Key: res.Name, Version: res.Version})
}
