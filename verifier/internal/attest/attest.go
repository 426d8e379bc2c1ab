// Package attest is the verifier's two transactions, each one entry point
// that needs no HTTP:
//
//   - Attest: evidence in, a token out. No token leaves without a spent
//     nonce and its audit record, written in one store transaction; every
//     attempt that names a nonce this verifier issued spends it, denied,
//     malformed or not.
//   - Release: a token in, a key out. No key leaves without a verified
//     token, the key's release policy allowing it, and its audit record.
//
// The HTTP handlers (package api) admit a request, read its body and
// render the error these return (package fault); everything between is
// here, over challenge, appraise, token, release and the store. Failed
// attempts that prove nothing (no genuine nonce, no valid token) are
// audited within a per-client budget (audit.go).
package attest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/clients"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// Nonces checks and redeems challenge nonces (challenge.Service).
type Nonces interface {
	Claim(nonce []byte) (*challenge.Claim, error)
	RedeemWithAudit(ctx context.Context, c *challenge.Claim, rec store.AuditRecord) error
}

// Appraiser appraises decoded evidence (appraise.Appraiser).
type Appraiser interface {
	Appraise(ctx context.Context, env *evidence.Envelope, rd *evidence.RuntimeData, audience []string) (*appraise.Result, error)
}

// Tokens signs and verifies tokens (token.Issuer).
type Tokens interface {
	Sign(c *token.Claims) (string, error)
	VerifyClaims(ctx context.Context, token, audience string) (map[string]any, error)
}

// Releaser releases keys (release.Service).
type Releaser interface {
	Release(ctx context.Context, req release.Request) (*release.Result, error)
}

// AuditLog is the audit log (store.Store).
type AuditLog interface {
	AppendAudit(ctx context.Context, r store.AuditRecord) (int64, error)
}

// Config configures a Service. All fields without a stated default are
// required.
type Config struct {
	Nonces    Nonces
	Appraiser Appraiser
	Tokens    Tokens
	Release   Releaser
	Audit     AuditLog
	Metrics   *Metrics
	// ReleaseAudience is the aud a token must carry to release a key.
	ReleaseAudience string
	// FailureAuditRate and FailureAuditBurst bound, per client, the audit
	// rows of failed attempts that prove nothing (see audit.go); zero
	// means DefaultFailureAuditRate, and a burst under 1
	// DefaultFailureAuditBurst.
	FailureAuditRate  float64
	FailureAuditBurst int
	// Now is the clock of the per-client audit budget; nil means time.Now.
	Now func() time.Time
	// Log receives issued tokens, released keys and audit write failures;
	// nil discards them.
	Log *slog.Logger
}

// Service runs the attestation and key release transactions.
type Service struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	failures *clients.Buckets
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"nonces": cfg.Nonces == nil, "appraiser": cfg.Appraiser == nil, "tokens": cfg.Tokens == nil,
		"key releaser": cfg.Release == nil, "audit log": cfg.Audit == nil, "metrics": cfg.Metrics == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if cfg.ReleaseAudience == "" {
		errs = append(errs, errors.New("no release audience"))
	}
	if cfg.FailureAuditRate < 0 {
		errs = append(errs, fmt.Errorf("negative failure audit rate %v", cfg.FailureAuditRate))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the attestation service: %w", err)
	}
	if cfg.FailureAuditRate == 0 {
		cfg.FailureAuditRate = DefaultFailureAuditRate
	}
	if cfg.FailureAuditBurst <= 0 {
		cfg.FailureAuditBurst = DefaultFailureAuditBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, log: cfg.Log, metrics: cfg.Metrics,
		failures: clients.New(cfg.FailureAuditRate, cfg.FailureAuditBurst)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// done calls f, the caller's "CPU work over" hook, when there is one.
func done(f func()) {
	if f != nil {
		f()
	}
}
