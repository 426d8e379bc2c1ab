package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/confidant-cvm/confidant/shared/unixsock"
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

// publicTLS is the TLS configuration of the public listener.
func publicTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading TLS key pair: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// AdminListener opens the admin API's listener as configured: a unix
// socket (mode 0600; a stale socket is replaced, one in use is an error),
// a TCP listener with mutual TLS, or nil when the admin API is off.
func (s *Server) AdminListener() (net.Listener, error) {
	network, addr, err := s.cfg.AdminAddress()
	if err != nil || network == "" {
		return nil, err
	}
	if network == "unix" {
		return listenUnix(addr)
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.AdminTLSCert, s.cfg.AdminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading the admin TLS key pair: %w", err)
	}
	caPEM, err := os.ReadFile(s.cfg.AdminClientCA)
	if err != nil {
		return nil, fmt.Errorf("reading the admin client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("reading the admin client CA %s: no PEM certificate", s.cfg.AdminClientCA)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the admin API: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}), nil
}

// listenUnix listens on a unix socket only its owner can connect to, from
// the moment it exists (see unixsock).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the admin socket directory: %w", err)
	}
	ln, err := unixsock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("listening for the admin API: %w", err)
	}
	return ln, nil
}
