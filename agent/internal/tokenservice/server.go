package tokenservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
)

// Source gets a token for a request (*Issuer implements it).
type Source interface {
	Token(ctx context.Context, req Request) (string, error)
}

// Server defaults.
const (
	// DefaultTimeout bounds one token request.
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxPending bounds the requests waiting for the one in progress.
	DefaultMaxPending = 16
)

// Server serves the token API. Zero values are documented per field.
//
//	GET /v1/token?audience=A[&nonce=N]
//	  200 application/json {"token": "<JWT>"}
//	  400 {"error": "bad_request", "reasons": [...]}       audience, nonce
//	  502 {"error": "attestation_failed", "reasons": [...]} verifier or evidence
//	  503 {"error": "busy", ...}                           too many waiting
type Server struct {
	// Source gets the tokens. Required.
	Source Source
	// Timeout bounds one request; 0: DefaultTimeout.
	Timeout time.Duration
	// MaxPending bounds the requests in progress or waiting; 0:
	// DefaultMaxPending.
	MaxPending int
	// Log receives one line per request (peer uid and pid, audience, the
	// token's jti); nil: discarded.
	Log *slog.Logger
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	pending := s.MaxPending
	if pending <= 0 {
		pending = DefaultMaxPending
	}
	sem := make(chan struct{}, pending)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		req := Request{Audience: q.Get("audience"), Nonce: q.Get("nonce")}
		peer := peerAttrs(r.Context())
		if len(q["audience"]) > 1 || len(q["nonce"]) > 1 {
			writeError(w, http.StatusBadRequest, "bad_request", "audience and nonce may be given once each")
			return
		}
		if err := req.Check(); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			writeError(w, http.StatusServiceUnavailable, "busy", "too many token requests waiting; retry later")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		tok, err := s.Source.Token(ctx, req)
		if err != nil {
			log.Warn("token request failed", append(peer, "audience", req.Audience, "err", err)...)
			status, code := http.StatusBadGateway, "attestation_failed"
			if errors.Is(err, ErrRequest) {
				status, code = http.StatusBadRequest, "bad_request"
			}
			writeError(w, status, code, console.Reason(err))
			return
		}
		info, _ := vclient.ParseTokenInfo(tok)
		log.Info("token issued", append(peer, "audience", req.Audience, "jti", info.ID)...)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]string{"token": tok})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code string, reasons ...string) {
	writeJSON(w, status, map[string]any{"error": code, "reasons": reasons})
}

// peerKey is the context key of a connection's peer credentials.
type peerKey struct{}

// peerAttrs returns the log attributes of the request's peer.
func peerAttrs(ctx context.Context) []any {
	if c, ok := ctx.Value(peerKey{}).(*unix.Ucred); ok {
		return []any{"peer_uid", c.Uid, "peer_pid", c.Pid}
	}
	return nil
}

// connContext records the peer credentials of a unix socket connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// Listen makes the unix socket at path with mode (a stale socket there is
// replaced; any other file is not).
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listening on %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// The socket is made with the umask's mode first: make it private
	// until chmod gives it the mode asked for.
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return ln, nil
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext:       connContext,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving token API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down token API: %w", err)
	}
	<-done
	return nil
}
