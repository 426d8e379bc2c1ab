package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	sevtrust "github.com/google/go-sev-guest/verify/trust"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/confidant-cvm/confidant/policies"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// newHolder loads the appraisal policies and reference values (files, then
// what the admin API stored) and records each set loaded in the store.
func newHolder(ctx context.Context, cfg Config, st store.Store, now func() time.Time, log *slog.Logger) (*policy.Holder, error) {
	return policy.NewHolder(ctx, policy.HolderConfig{
		PolicyFiles:   cfg.Policies,
		ReferenceFile: cfg.ReferenceValues,
		Options:       policy.Options{Reserved: PolicyReserved, Timeout: cfg.PolicyTimeout},
		OnLoad:        func(ctx context.Context, set *policy.Set) error { return RecordSet(ctx, st, set, now()) },
		Overrides:     func(ctx context.Context) (*policy.Overrides, error) { return storedOverrides(ctx, st) },
		PollEvery:     policyPoll,
		Log:           log.WithGroup("policy"),
	})
}

// newAppraiser is the appraiser over the policies of holder; it fetches
// collateral over the network only when cfg says so.
func newAppraiser(cfg Config, holder *policy.Holder, simRoot *x509.Certificate, now func() time.Time, log *slog.Logger) (*appraise.Appraiser, error) {
	acfg := appraise.Config{Policies: holder, SimRoot: simRoot, Now: now, Log: log.WithGroup("appraise")}
	if cfg.SNPFetchVCEK {
		acfg.SNPGetter = sevtrust.DefaultHTTPSGetter()
	}
	if cfg.TDXFetchCollateral {
		acfg.TDXGetter = tdxtrust.DefaultHTTPSGetter()
	}
	return appraise.New(acfg)
}

// handlers assembles, over the parts New made, the release service, the
// attestation and release transactions, the metrics and the public and
// admin APIs.
func (s *Server) handlers(ctx context.Context, sealer *seal.Sealer, chal *challenge.Service, appraiser *appraise.Appraiser,
	issuer *token.Issuer) error {
	cfg, st, now, log := s.cfg, s.Store, s.now, s.log
	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := api.NewMetrics(s.Registry)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	tmetrics, err := attest.NewMetrics(s.Registry)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	s.Release, err = release.New(ctx, release.Config{Store: st, Sealer: sealer, DefaultPolicy: policies.DefaultRelease(), Now: now,
		PolicyTimeout: cfg.PolicyTimeout})
	if err != nil {
		return err
	}
	// The service logs in the API's group, as the handlers did before it.
	s.attest, err = attest.New(attest.Config{
		Nonces: chal, Appraiser: appraiser, Tokens: issuer, Release: s.Release, Audit: st, Metrics: tmetrics,
		ReleaseAudience:  cfg.ReleaseAudience,
		FailureAuditRate: cfg.FailureAuditRate, FailureAuditBurst: cfg.FailureAuditBurst, Now: now,
		Log: log.WithGroup("api"),
	})
	if err != nil {
		return err
	}
	s.Handler, err = api.New(api.Config{
		Service: s.attest, Challenge: chal, Issuer: issuer, Keys: s.Keys, Store: st,
		Metrics: metrics, Gatherer: s.Registry, DefaultAudience: cfg.Audience,
		MaxBodyBytes: cfg.MaxBodyBytes, RateLimit: cfg.RateLimit, Burst: cfg.Burst,
		MaxInFlight: cfg.MaxInFlight, MaxQueue: cfg.MaxQueue, QueueTimeout: cfg.QueueTimeout,
		MetricsElsewhere: cfg.MetricsListen != "", Now: now,
		Log: log.WithGroup("api"),
	})
	if err != nil {
		return err
	}
	s.AdminHandler, err = api.NewAdmin(api.AdminConfig{Keys: s.Release, Policies: s, Audit: st, Metrics: metrics,
		Log: log.WithGroup("admin")})
	return err
}
