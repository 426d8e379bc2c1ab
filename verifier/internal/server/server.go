// Package server assembles the verifier from its configuration and runs
// it: store, signing keys, release keys, policies, the public HTTP API, the
// admin API on its own listener and the background loops (key rotation,
// policy reload, nonce pruning), joined by an errgroup and shut down
// gracefully.
package server

import (
	"context"
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
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// nonceGrace keeps redeemed nonces past their expiry, for replicas whose
// clocks lag.
const nonceGrace = 5 * time.Minute

// policyPoll is how often a server checks the store for policies another
// replica loaded through the admin API.
const policyPoll = 30 * time.Second

// Server is an assembled verifier.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	Store    store.Store
	Keys     *token.Keys
	Policies *policy.Holder
	watcher  *policy.Watcher
	// Release manages and releases keys.
	Release *release.Service
	// Handler is the public API; AdminHandler the admin API (served only
	// on the admin listener).
	Handler      http.Handler
	AdminHandler http.Handler
	Registry     *prometheus.Registry
	// attest runs the transactions; its Run summarizes suppressed audit
	// rows.
	attest *attest.Service
}

// Options inject what tests replace, and secrets that do not belong in a
// Config; the zero value is production with the KEK file.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KEK, when set, is the 32-byte key-encryption key itself (main reads
	// it from --kek-fd or CONFIDANT_VERIFIER_KEK); Config.KEKFile is then
	// not used.
	KEK []byte
}

// newSealer returns the sealer of the KEK given, or of the KEK file.
func newSealer(kek []byte, file string) (*seal.Sealer, error) {
	if kek != nil {
		s, err := seal.New(kek)
		if err != nil {
			return nil, fmt.Errorf("loading the KEK given to the process: %w", err)
		}
		return s, nil
	}
	return seal.LoadOrCreate(file)
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
	sealer, err := newSealer(opts.KEK, cfg.KEKFile)
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
	macKey, _, err := challenge.LoadKey(ctx, st, sealer, log.WithGroup("challenge"))
	if err != nil {
		return nil, err
	}
	chal, err := challenge.New(challenge.Config{Key: macKey, Store: st, TTL: cfg.NonceTTL, Now: now})
	if err != nil {
		return nil, err
	}
	holder, err := newHolder(ctx, cfg, st, now, log)
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
	appraiser, err := newAppraiser(cfg, holder, simRoot, now, log)
	if err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, log: log, now: now, Store: st, Keys: keys, Policies: holder, watcher: watcher}
	if err = srv.handlers(ctx, sealer, chal, appraiser, issuer); err != nil {
		return nil, err
	}
	if simRoot != nil {
		log.Warn("trusting the simulated TEE root: tokens for sim-sev-snp evidence can be issued", "sim_root", cfg.SimRoot)
	}
	log.Info("store opened", "store", store.Redact(cfg.Store), "kek_id", sealer.ID())
	return srv, nil
}

// storedOverrides reads the policies and reference values loaded through
// the admin API.
func storedOverrides(ctx context.Context, st store.Store) (*policy.Overrides, error) {
	docs, err := st.ActiveDocuments(ctx)
	if err != nil {
		return nil, err
	}
	o := &policy.Overrides{Policies: map[string]policy.Source{}}
	for slot, d := range docs {
		src := policy.Source{Name: "store:" + slot, Content: d.Content}
		if kind, ok := store.PolicySlotKind(slot); ok {
			o.Policies[kind] = src
		} else if slot == store.ReferenceSlot {
			o.Reference = &src
		}
	}
	return o, nil
}

// teeKinds are the TEE kinds a policy can be loaded for.
var teeKinds = []evidence.Kind{evidence.KindSNP, evidence.KindTDX, evidence.KindSimSNP}

// LoadPolicy makes src the appraisal policy of kind: it must compile and
// declare kind. It is stored (so that it survives restarts and reaches the
// other replicas, at their next poll) and swapped in here at once.
func (s *Server) LoadPolicy(ctx context.Context, kind string, src []byte) (*policy.Policy, *policy.Set, error) {
	if !slices.Contains(teeKinds, evidence.Kind(kind)) {
		return nil, nil, fmt.Errorf("loading policy: unknown TEE kind %q (want one of %v): %w", kind, teeKinds, policy.ErrLoad)
	}
	slot := store.PolicySlot(kind)
	set, err := s.Policies.Apply(ctx, func(o *policy.Overrides) {
		o.Policies[kind] = policy.Source{Name: "store:" + slot, Content: src}
	}, func(ctx context.Context, set *policy.Set) error {
		p, err := set.For(kind)
		if err != nil {
			return err
		}
		return s.Store.ActivateDocument(ctx, slot, store.Document{Kind: store.DocPolicy, ID: p.ID, SHA256: p.SHA256,
			Content: src, LoadedAt: s.now()})
	})
	if err != nil {
		return nil, nil, err
	}
	p, err := set.For(kind)
	if err != nil {
		return nil, nil, err
	}
	return p, set, nil
}

// LoadReferenceValues makes content the reference values, like
// LoadPolicy.
func (s *Server) LoadReferenceValues(ctx context.Context, content []byte) (*policy.Set, error) {
	return s.Policies.Apply(ctx, func(o *policy.Overrides) {
		o.Reference = &policy.Source{Name: "store:" + store.ReferenceSlot, Content: content}
	}, func(ctx context.Context, set *policy.Set) error {
		return s.Store.ActivateDocument(ctx, store.ReferenceSlot, store.Document{Kind: store.DocReferenceValues,
			ID: "admin", SHA256: set.Reference.SHA256, Content: content, LoadedAt: s.now()})
	})
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
	srv, ln, err := s.publicServer(ln)
	if err != nil {
		return err
	}
	adminLn, err := s.AdminListener()
	if err != nil {
		ln.Close()
		return err
	}
	metricsLn, err := s.metricsListener()
	if err != nil {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	serve := func(name string, srv *http.Server, ln net.Listener) {
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving %s: %w", name, err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutting down %s: %w", name, err)
			}
			return nil
		})
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "issuer", s.cfg.Issuer, "tls", s.cfg.TLS())
	serve("HTTP", srv, ln)
	if adminLn != nil {
		s.log.Info("serving the admin API", "addr", adminLn.Addr().Network()+":"+adminLn.Addr().String())
		serve("admin API", s.adminServer(), adminLn)
	}
	if metricsLn != nil {
		s.log.Info("serving /metrics", "addr", metricsLn.Addr().String())
		serve("metrics", s.metricsServer(), metricsLn)
	}
	g.Go(func() error { return s.attest.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		s.log.Info("shutting down")
		return nil
	})
	g.Go(func() error { return s.Keys.Run(gctx) })
	g.Go(func() error { return s.watcher.Run(gctx, reload) })
	g.Go(func() error { return s.pruneNonces(gctx) })
	return g.Wait()
}

// publicServer builds the public API's server and wraps ln in the
// connection limit and, when configured, TLS. On error ln is closed.
func (s *Server) publicServer(ln net.Listener) (*http.Server, net.Listener, error) {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ln = limitListener(ln, s.cfg.MaxConnections)
	if s.cfg.TLS() {
		var err error
		if srv.TLSConfig, err = publicTLS(s.cfg); err != nil {
			ln.Close()
			return nil, nil, err
		}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else {
		s.log.Warn("serving plain HTTP: tokens and evidence are not protected in transit", "addr", ln.Addr().String())
	}
	return srv, ln, nil
}

// adminServer builds the admin API's server.
func (s *Server) adminServer() *http.Server {
	return &http.Server{
		Handler:           s.AdminHandler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
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
	// KEK, when set, replaces KEKFile (as Options.KEK).
	KEK []byte
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
	sealer, err := newSealer(kc.KEK, kc.KEKFile)
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
