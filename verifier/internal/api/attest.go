package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

// AttestResponse is the body of a successful POST /v1/attest (shared/api).
type AttestResponse = wire.AttestResponse

// attest answers POST /v1/attest: it admits the request, reads its body
// and hands it to the attestation service (attest.Service.Attest), which
// appraises, audits and signs.
func (h *handler) attest(w http.ResponseWriter, r *http.Request) {
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
	tok, err := h.Service.Attest(r.Context(), attest.Evidence{Body: body, Audience: audience, Remote: remoteHost(r), Done: t.done})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, AttestResponse{Token: tok})
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
		return nil, fmt.Errorf("%w: reading the request body: %w", fault.ErrBadRequest, err)
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
		return nil, fmt.Errorf("%w: %d audiences, at most %d", fault.ErrBadRequest, len(aud), MaxAudiences)
	}
	for _, a := range aud {
		if a == "" || len(a) > 256 || strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("%w: invalid audience %q", fault.ErrBadRequest, a)
		}
	}
	slices.Sort(aud)
	return slices.Compact(aud), nil
}
