// Package server assembles the verifier from its configuration and runs
// it: store, signing keys, policies, the HTTP API and the background loops
// (key rotation, policy reload, nonce pruning), joined by an errgroup and
// shut down gracefully.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	sevtrust "github.com/google/go-sev-guest/verify/trust"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// nonceSecret names the nonce MAC key in the store.
const nonceSecret = "nonce-mac-key"

// nonceGrace keeps redeemed nonces past their expiry, for replicas whose
// clocks lag.
const nonceGrace = 5 * time.Minute

// Server is an assembled verifier.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	Store    store.Store
	Keys     *token.Keys
	Policies *policy.Holder
	watcher  *policy.Watcher
	Handler  http.Handler
	Registry *prometheus.Registry
}

// Options inject what tests replace; the zero value is production.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New assembles a verifier. Close it when done.
func New(ctx context.Context, cfg Config, log *slog.Logger, opts Options) (s *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	simRoot, err := loadSimRoot(cfg.SimRoot)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	sealer, err := seal.LoadOrCreate(cfg.KEKFile)
	if err != nil {
		return nil, err
	}
	keys, err := token.NewKeys(ctx, token.KeysConfig{
		Store: st, Sealer: sealer, Alg: cfg.SigningAlg, RotateEvery: cfg.KeyRotation,
		TokenTTL: cfg.TokenTTL, Now: now, Log: log.WithGroup("keys"),
	})
	if err != nil {
		return nil, err
	}
	issuer, err := token.NewIssuer(token.IssuerConfig{Keys: keys, Issuer: cfg.Issuer, TTL: cfg.TokenTTL, Now: now})
	if err != nil {
		return nil, err
	}
	macKey, err := st.Secret(ctx, nonceSecret, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("loading nonce key: %w", err)
	}
	chal, err := challenge.New(challenge.Config{Key: macKey, Store: st, TTL: cfg.NonceTTL, Now: now})
	if err != nil {
		return nil, err
	}
	holder, err := policy.NewHolder(ctx, policy.HolderConfig{
		PolicyFiles:   cfg.Policies,
		ReferenceFile: cfg.ReferenceValues,
		Options:       policy.Options{Reserved: PolicyReserved},
		OnLoad:        func(ctx context.Context, set *policy.Set) error { return RecordSet(ctx, st, set, now()) },
		Log:           log.WithGroup("policy"),
	})
	if err != nil {
		return nil, err
	}
	watcher, err := holder.Watch()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			watcher.Close()
		}
	}()
	acfg := appraise.Config{Policies: holder, SimRoot: simRoot, Now: now, Log: log.WithGroup("appraise")}
	if cfg.SNPFetchVCEK {
		acfg.SNPGetter = sevtrust.DefaultHTTPSGetter()
	}
	if cfg.TDXFetchCollateral {
		acfg.TDXGetter = tdxtrust.DefaultHTTPSGetter()
	}
	appraiser, err := appraise.New(acfg)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := api.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	h, err := api.New(api.Config{
		Challenge: chal, Appraiser: appraiser, Issuer: issuer, Keys: keys, Store: st,
		Metrics: metrics, Gatherer: reg, DefaultAudience: cfg.Audience,
		MaxBodyBytes: cfg.MaxBodyBytes, RateLimit: cfg.RateLimit, Burst: cfg.Burst,
		Log: log.WithGroup("api"),
	})
	if err != nil {
		return nil, err
	}
	if simRoot != nil {
		log.Warn("trusting the simulated TEE root: tokens for sim-sev-snp evidence can be issued", "sim_root", cfg.SimRoot)
	}
	return &Server{cfg: cfg, log: log, now: now, Store: st, Keys: keys, Policies: holder, watcher: watcher, Handler: h, Registry: reg}, nil
}

// PolicyReserved names the claims a policy may not add: every claim the
// verifier sets, except swname, which policies name.
func PolicyReserved(name string) bool { return name != "swname" && token.Reserved(name) }

// RecordSet records a loaded policy set in the store.
func RecordSet(ctx context.Context, st store.Store, set *policy.Set, at time.Time) error {
	for _, p := range set.Policies {
		if err := st.RecordDocument(ctx, store.Document{Kind: store.DocPolicy, ID: p.ID, SHA256: p.SHA256,
			Content: p.Source, LoadedAt: at}); err != nil {
			return err
		}
	}
	ref := set.Reference
	return st.RecordDocument(ctx, store.Document{Kind: store.DocReferenceValues, ID: ref.File, SHA256: ref.SHA256,
		Content: ref.Content, LoadedAt: at})
}

// loadSimRoot reads the simulated root certificate; empty path: none.
func loadSimRoot(path string) (*x509.Certificate, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading simulated root: %w", err)
	}
	return ParseCertificate(b)
}

// ParseCertificate parses one PEM or DER certificate.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("parsing certificate: PEM block %q", blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return c, nil
}

// Close releases the store and the policy file watch.
func (s *Server) Close() error {
	s.watcher.Close()
	return s.Store.Close()
}

// Run serves until ctx ends, then shuts down gracefully. A value on reload
// (SIGHUP) reloads the policies and reference values.
func (s *Server) Run(ctx context.Context, reload <-chan struct{}) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	return s.Serve(ctx, ln, reload)
}

// Serve is Run on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener, reload <-chan struct{}) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.TLS() {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("loading TLS key pair: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else {
		s.log.Warn("serving plain HTTP: tokens and evidence are not protected in transit", "addr", ln.Addr().String())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.log.Info("serving", "addr", ln.Addr().String(), "issuer", s.cfg.Issuer, "tls", s.cfg.TLS())
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()
		s.log.Info("shutting down")
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutting down HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return s.Keys.Run(gctx) })
	g.Go(func() error { return s.watcher.Run(gctx, reload) })
	g.Go(func() error { return s.pruneNonces(gctx) })
	return g.Wait()
}

func (s *Server) pruneNonces(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := s.Store.PruneNonces(ctx, s.now().Add(-nonceGrace)); err != nil {
			s.log.Warn("pruning nonces", "err", err)
		} else if n > 0 {
			s.log.Debug("pruned nonces", "count", n)
		}
	}
}

// KeysConfig locates the signing keys for OpenKeys.
type KeysConfig struct {
	// StateDir, Store and KEKFile as in Config (Store and KEKFile default
	// to files in StateDir).
	StateDir, Store, KEKFile string
	// SigningAlg is the algorithm of new keys.
	SigningAlg string
	// TokenTTL is the servers' token lifetime.
	TokenTTL time.Duration
}

// OpenKeys opens the store and the signing keys (for the keys command);
// close the returned store when done.
func OpenKeys(ctx context.Context, kc KeysConfig, log *slog.Logger) (*token.Keys, store.Store, error) {
	if kc.Store == "" {
		kc.Store = "sqlite:" + filepath.Join(kc.StateDir, "verifier.db")
	}
	if kc.KEKFile == "" {
		kc.KEKFile = filepath.Join(kc.StateDir, "signing.kek")
	}
	st, err := store.Open(ctx, kc.Store)
	if err != nil {
		return nil, nil, err
	}
	sealer, err := seal.LoadOrCreate(kc.KEKFile)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	k, err := token.NewKeys(ctx, token.KeysConfig{Store: st, Sealer: sealer, Alg: kc.SigningAlg, TokenTTL: kc.TokenTTL, Log: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return k, st, nil
}
