package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// The backoff of Start between attempts to reach the store: from the first
// delay doubling up to the last, each drawn in [d/2, d].
const (
	startBackoffFirst = 500 * time.Millisecond
	startBackoffMax   = 30 * time.Second
)

// Start is New, waiting for the store: while the store is unavailable
// (PostgreSQL not up yet, a SQLite file on a full or read-only disk) it
// retries with backoff instead of failing, and meanwhile serves the public
// address with a stand-in that answers /healthz 200 and everything else,
// /readyz included, 503 not_ready with the reason. A load balancer sees
// the verifier alive but not ready; clients get an answer they retry. Any
// other error (a bad policy, a missing KEK) fails at once, as from New. It
// returns when New succeeds, with the stand-in closed so that Run can
// listen, or when ctx ends.
func Start(ctx context.Context, cfg Config, log *slog.Logger, opts Options) (*Server, error) {
	s, err := New(ctx, cfg, log, opts)
	if err == nil || !errors.Is(err, store.ErrUnavailable) {
		return s, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &waiting{}
	w.set(err)
	stop, serr := w.serve(cfg, log)
	if serr != nil {
		return nil, errors.Join(err, serr)
	}
	defer stop()
	for delay := startBackoffFirst; ; delay = min(2*delay, startBackoffMax) {
		d := delay/2 + rand.N(delay/2+1)
		log.Warn("store unavailable; serving not-ready and retrying", "store", store.Redact(cfg.Store), "err", err, "retry_in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the store: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(d):
		}
		if s, err = New(ctx, cfg, log, opts); err == nil {
			log.Info("store reachable; starting")
			return s, nil
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		w.set(err)
	}
}

// waiting is the stand-in handler of Start.
type waiting struct {
	reason atomic.Pointer[string]
}

func (w *waiting) set(err error) {
	r := "store unreachable: waiting for it to come up"
	switch {
	case errors.Is(err, store.ErrFull):
		r = "store unreachable: its disk is full"
	case errors.Is(err, store.ErrReadOnly):
		r = "store unreachable: it is read-only"
	}
	w.reason.Store(&r)
}

func (w *waiting) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	status, body := http.StatusServiceUnavailable, any(api.ErrorBody{Error: api.CodeNotReady, Reasons: []string{*w.reason.Load()}})
	if r.URL.Path == "/healthz" && r.Method == http.MethodGet {
		status, body = http.StatusOK, map[string]string{"status": "ok"}
	} else {
		rw.Header().Set("Retry-After", "1")
	}
	b, _ := json.Marshal(body)
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_, _ = rw.Write(append(b, '\n'))
}

// serve serves w on the public address (with TLS when configured) until
// the returned stop is called.
func (w *waiting) serve(cfg Config, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	srv := &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if cfg.TLS() {
		tc, err := publicTLS(cfg)
		if err != nil {
			ln.Close()
			return nil, err
		}
		ln = tls.NewListener(ln, tc)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("serving not-ready until the store is reachable", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
