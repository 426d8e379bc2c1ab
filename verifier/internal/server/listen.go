package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
)

// idleTimeout closes a keep-alive connection that sent nothing for this
// long: an agent's requests follow each other within a second, and an idle
// connection holds one of MaxConnections.
const idleTimeout = 30 * time.Second

// limitListener accepts at most n connections at once (n ≤ 0: Default-
// MaxConnections); Accept waits for one to close, and the clients beyond
// wait in the kernel's accept queue, so a flood of connections cannot grow
// the verifier's goroutines and buffers without bound.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		n = DefaultMaxConnections
	}
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitedConn gives its place back when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// metricsListener listens on MetricsListen; nil when it is not set.
func (s *Server) metricsListener() (net.Listener, error) {
	if s.cfg.MetricsListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("listening for /metrics: %w", err)
	}
	return limitListener(ln, maxMetricsConnections), nil
}

// maxMetricsConnections is plenty for a few scrapers.
const maxMetricsConnections = 64

// MetricsHandler serves GET /metrics alone: the metrics listener's handler.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", api.MetricsHandler(s.Registry))
	return mux
}

func (s *Server) metricsServer() *http.Server {
	return &http.Server{
		Handler:           s.MetricsHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}
