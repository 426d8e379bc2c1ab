// Package api is the verifier's HTTP API (chi, JSON, versioned):
//
//	POST /v1/challenge                      → {"nonce", "expires_at"}
//	POST /v1/attest[?audience=A...]         → {"token"}; body: evidence envelope
//	POST /v1/keys/{name}/release            → {"jwe", "key", "version"}; bearer token, body {"version": N} optional
//	GET  /v1/jwks                           → the public signing keys (JWK Set)
//	GET  /.well-known/openid-configuration  → OIDC discovery
//	GET  /healthz, /readyz, /metrics (unless Config.MetricsElsewhere)
//
// NewAdmin returns the admin API (package admin lists its routes), served
// only on the admin listener.
//
// The handlers admit a request, read its body and render the answer; the
// attestation and key release transactions themselves are package attest's
// (handler → attest → appraise, token, release, store). Every failure
// answers {"error": "<code>", "reasons": [...]}: the codes are shared/api's
// and the one mapping from errors to them is fault.Classify, for both
// handlers and for the audit log.
package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/clients"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// DefaultMaxBodyBytes caps request bodies (the largest envelope plus slack
// for JSON and base64).
const DefaultMaxBodyBytes = evidence.MaxEnvelopeSize + 64<<10

// MaxAudiences caps the audiences one token may name.
const MaxAudiences = 8

// KeySet publishes the signing keys (token.Keys implements it).
type KeySet interface {
	PublicSet() (jwk.Set, error)
	CurrentKID() string
}

// Store is what the API needs from the store.
type Store interface {
	Ping(ctx context.Context) error
}

// Config configures the handler. All fields without a stated default are
// required.
type Config struct {
	// Service runs the attestation and key release transactions.
	Service *attest.Service
	// Challenge issues nonces; Issuer names the issuer in discovery.
	Challenge *challenge.Service
	Issuer    *token.Issuer
	Keys      KeySet
	Store     Store
	Metrics   *Metrics
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// MetricsElsewhere leaves /metrics out (it is served on a listener of
	// its own).
	MetricsElsewhere bool
	// Ready, when set, adds checks to /readyz (for example "policies
	// loaded").
	Ready func(ctx context.Context) error
	// DefaultAudience is the aud of tokens whose request names none.
	DefaultAudience string
	// MaxBodyBytes caps request bodies; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// RateLimit is the sustained rate (requests per second) of POST
	// requests per client (remote IP); zero means unlimited. Burst is the
	// bucket size (at least 1).
	RateLimit float64
	Burst     int
	// Now is the clock of the per-client rate limit; nil means time.Now.
	Now func() time.Time
	// MaxInFlight bounds the attestations and key releases processed at
	// once; zero means DefaultMaxInFlight(). MaxQueue bounds those admitted
	// at once (waiting for a slot or processing): more are refused at once;
	// zero means DefaultMaxQueue. QueueTimeout bounds the wait for a slot;
	// zero means DefaultQueueTimeout. Refusals are 503 overloaded with
	// Retry-After.
	MaxInFlight  int
	MaxQueue     int
	QueueTimeout time.Duration
	// Log receives request failures; nil discards them.
	Log *slog.Logger
}

type handler struct {
	Config
	base
	// limiter is nil without a rate limit.
	limiter   *clients.Buckets
	admission *admission
	// routes are the route patterns, the values of the route label.
	routes map[string]bool
}

func (h *handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// API is the public API, an http.Handler.
type API struct {
	http.Handler
}

// New returns the public API.
func New(cfg Config) (*API, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"attestation service": cfg.Service == nil, "challenge service": cfg.Challenge == nil,
		"token issuer": cfg.Issuer == nil, "keys": cfg.Keys == nil, "store": cfg.Store == nil,
		"metrics": cfg.Metrics == nil, "metrics gatherer": cfg.Gatherer == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if cfg.DefaultAudience == "" {
		errs = append(errs, errors.New("no default audience"))
	}
	if cfg.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("negative rate limit %v", cfg.RateLimit))
	}
	if cfg.MaxInFlight < 0 || cfg.MaxQueue < 0 || cfg.QueueTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative admission limit (in flight %d, queue %d, timeout %v)",
			cfg.MaxInFlight, cfg.MaxQueue, cfg.QueueTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring API: %w", err)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &handler{Config: cfg, base: base{log: cfg.Log, metrics: cfg.Metrics}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if cfg.RateLimit > 0 {
		h.limiter = clients.New(cfg.RateLimit, cfg.Burst)
	}
	h.admission = newAdmission(cfg.MaxInFlight, cfg.MaxQueue, cfg.QueueTimeout, cfg.Metrics)

	r := chi.NewRouter()
	r.Use(h.instrument)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { h.writeError(w, r, fault.ErrNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { h.writeError(w, r, fault.ErrMethod) })
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	if !cfg.MetricsElsewhere {
		r.Method(http.MethodGet, "/metrics", MetricsHandler(cfg.Gatherer))
	}
	r.Get("/.well-known/openid-configuration", h.discovery)
	r.Route("/v1", func(r chi.Router) {
		r.Get("/jwks", h.jwks)
		r.Group(func(r chi.Router) {
			r.Use(h.rateLimit, h.requireJSON, h.limitBody)
			r.Post("/challenge", h.challenge)
			r.Post("/attest", h.attest)
			r.Post("/keys/{name}/release", h.release)
		})
	})
	var err error
	if h.routes, err = routeSet(r); err != nil {
		return nil, fmt.Errorf("configuring API: %w", err)
	}
	return &API{Handler: r}, nil
}

// MetricsHandler serves the metrics of g (GET /metrics).
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

func (h *handler) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > h.MaxBodyBytes {
			h.writeError(w, r, &http.MaxBytesError{Limit: h.MaxBodyBytes})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, h.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := h.Store.Ping(ctx); err != nil {
		problems = append(problems, "store unreachable")
		h.log.Warn("readiness: store", "err", err)
	}
	if h.Keys.CurrentKID() == "" {
		problems = append(problems, "no signing key loaded")
	}
	if h.Ready != nil {
		if err := h.Ready(ctx); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		h.metrics.errors.WithLabelValues(CodeNotReady).Inc()
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: CodeNotReady, Reasons: problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ClaimsSupported lists the token claims, for discovery.
var ClaimsSupported = []string{
	"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "eat_nonce", "eat_profile", "hwmodel",
	"swname", "dbgstat", "secboot", "status", "tee", "tpm", "runtime", "policy",
}

func (h *handler) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := strings.TrimSuffix(h.Issuer.Issuer(), "/")
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              iss + "/v1/jwks",
		"challenge_endpoint":                    iss + "/v1/challenge",
		"attestation_endpoint":                  iss + "/v1/attest",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": token.AllowedAlgorithms,
		"claims_supported":                      ClaimsSupported,
		"eat_profiles_supported":                []string{token.EATProfile},
	})
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) {
	set, err := h.Keys.PublicSet()
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	b, err := json.Marshal(set)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(b)
}

// ChallengeResponse is the body of a successful POST /v1/challenge
// (shared/api).
type ChallengeResponse = wire.ChallengeResponse

func (h *handler) challenge(w http.ResponseWriter, r *http.Request) {
	// The body is ignored (it may be empty); drain what the limit allows.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		h.writeError(w, r, err)
		return
	}
	n, err := h.Challenge.Issue()
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.metrics.noncesIssued.Inc()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ChallengeResponse{Nonce: base64.RawURLEncoding.EncodeToString(n.Value), ExpiresAt: n.Expires})
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
