// Package api is hostd's control API: JSON over HTTP on a unix socket
// (mode 0600, so only root or hostd's user can drive guests), and the
// client the CLI uses.
//
//	GET    /v1/guests                      list
//	POST   /v1/guests                      create (body: the spec as JSON)
//	GET    /v1/guests/{name}               show
//	DELETE /v1/guests/{name}               delete (stops it first)
//	POST   /v1/guests/{name}/start         start
//	POST   /v1/guests/{name}/stop          stop; body {"deallocate":bool,"force":bool}
//	GET    /v1/guests/{name}/console       serial log; ?follow=1 keeps streaming
//
// Errors are {"error":{"code":"...","message":"..."}} with the status from
// one mapping (writeError).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/preflight"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/shared/unixsock"
)

// Guests is what the API drives (*guest.Manager).
type Guests interface {
	Create(ctx context.Context, s *spec.Spec) (guest.Guest, error)
	Get(name string) (guest.Guest, error)
	List() []guest.Guest
	Start(ctx context.Context, name string) (guest.Guest, error)
	Stop(ctx context.Context, name string, opts guest.StopOptions) (guest.Guest, error)
	Delete(ctx context.Context, name string) error
	ConsolePath(name string) (string, error)
}

// StopRequest is the body of POST /v1/guests/{name}/stop.
type StopRequest struct {
	Deallocate bool `json:"deallocate"`
	Force      bool `json:"force"`
}

// ErrorBody is the JSON error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Error codes and the sentinels they stand for.
var codes = []struct {
	err    error
	code   string
	status int
}{
	{spec.ErrInvalid, "invalid_spec", http.StatusBadRequest},
	{guest.ErrNotFound, "not_found", http.StatusNotFound},
	{guest.ErrExists, "exists", http.StatusConflict},
	{guest.ErrState, "wrong_state", http.StatusConflict},
	{preflight.ErrIsolationUnavailable, "isolation_unavailable", http.StatusPreconditionFailed},
	{guest.ErrClosed, "shutting_down", http.StatusServiceUnavailable},
	{errBadRequest, "bad_request", http.StatusBadRequest},
	{errMediaType, "unsupported_media_type", http.StatusUnsupportedMediaType},
	{errNoRoute, "not_found", http.StatusNotFound},
	{errMethod, "method_not_allowed", http.StatusMethodNotAllowed},
}

var (
	errBadRequest = errors.New("bad request")
	errMediaType  = errors.New("unsupported media type")
	errNoRoute    = errors.New("no such API route")
	errMethod     = errors.New("method not allowed")
)

const maxBody = 64 << 10

// NewHandler returns the API's routes.
func NewHandler(g Guests, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{g: g, log: log}
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, fmt.Errorf("%w: not found", errNoRoute))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, fmt.Errorf("%w: method %s not allowed here", errMethod, termsafe.Escape(r.Method)))
	})
	r.Route("/v1/guests", func(r chi.Router) {
		r.Get("/", h.list)
		r.Post("/", h.create)
		r.Get("/{name}", h.show)
		r.Delete("/{name}", h.delete)
		r.Post("/{name}/start", h.start)
		r.Post("/{name}/stop", h.stop)
		r.Get("/{name}/console", h.console)
	})
	return r
}

type handler struct {
	g   Guests
	log *slog.Logger
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.g.List())
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	if err := checkJSON(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.writeError(w, r, fmt.Errorf("%w: reading body: %v", errBadRequest, err))
		return
	}
	s, err := spec.ParseJSON(b)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	g, err := h.g.Create(r.Context(), s)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

// checkJSON refuses a body that does not say it is JSON (UTF-8).
func checkJSON(r *http.Request) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && mt == "application/json" {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return fmt.Errorf("%w: content type %q: want application/json", errMediaType, r.Header.Get("Content-Type"))
}

func (h *handler) show(w http.ResponseWriter, r *http.Request) {
	g, err := h.g.Get(chi.URLParam(r, "name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	if err := h.g.Delete(r.Context(), chi.URLParam(r, "name")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) start(w http.ResponseWriter, r *http.Request) {
	g, err := h.g.Start(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (h *handler) stop(w http.ResponseWriter, r *http.Request) {
	var req StopRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		h.writeError(w, r, fmt.Errorf("%w: decoding stop request: %v", errBadRequest, err))
		return
	}
	g, err := h.g.Stop(r.Context(), chi.URLParam(r, "name"), guest.StopOptions{Deallocate: req.Deallocate, Force: req.Force})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// console streams the serial log; with follow=1 it keeps polling for new
// output until the client goes away.
func (h *handler) console(w http.ResponseWriter, r *http.Request) {
	path, err := h.g.ConsolePath(chi.URLParam(r, "name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	follow := r.URL.Query().Get("follow") == "1"
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && follow {
		// Not booted yet: wait for the file.
		for errors.Is(err, os.ErrNotExist) && r.Context().Err() == nil {
			time.Sleep(200 * time.Millisecond)
			f, err = os.Open(path)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		return
	}
	if err != nil {
		h.writeError(w, r, fmt.Errorf("opening console log: %w", err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeError maps an error to its status and stable code; unknown errors
// are 500 "internal" and logged.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var body ErrorBody
	status := http.StatusInternalServerError
	body.Error.Code = "internal"
	for _, c := range codes {
		if errors.Is(err, c.err) {
			status, body.Error.Code = c.status, c.code
			break
		}
	}
	body.Error.Message = err.Error()
	if status == http.StatusInternalServerError {
		h.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.log.Info("API request refused", "method", r.Method, "path", r.URL.Path, "code", body.Error.Code, "err", err)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Listen opens the API's unix socket with mode 0600 from the moment it
// exists (see unixsock), replacing a stale socket file (but not any other
// kind of file).
func Listen(path string) (net.Listener, error) {
	ln, err := unixsock.Listen(path)
	if errors.Is(err, unixsock.ErrInUse) {
		return nil, fmt.Errorf("listening on %s: another hostd is serving it", path)
	}
	return ln, err
}

// Serve runs the API on ln until ctx ends, then shuts down gracefully
// (bounded to 10s; console streams are cut).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "err", err)
		srv.Close()
	}
	return nil
}
