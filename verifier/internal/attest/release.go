package attest

import (
	"context"
	"errors"
	"slices"
	"time"

	wire "github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// OutcomeGranted is the audit outcome (and key_releases_total result) of a
// released key.
const OutcomeGranted = "granted"

// maxAuditKeyName bounds the escaped form of an invalid key name in the
// audit log.
const maxAuditKeyName = 256

// KeyRequest is one key release attempt.
type KeyRequest struct {
	// Name is the key's name as asked; Version the version (0: the
	// latest).
	Name    string
	Version int
	// Token is the bearer token.
	Token string
	// Remote names the client (its IP), for the audit log and its
	// per-client budget.
	Remote string
	// Time is when the request arrived, the audit record's time; zero
	// means now.
	Time time.Time
	// Done, when set, is called once the CPU work is over, before the
	// store write: the caller frees what it holds for it.
	Done func()
}

// Release verifies the request's token (ours, for the release audience),
// asks release.Service for the key and returns it wrapped to the token's
// runtime key. Every attempt is audited; a key leaves only with its audit
// record written. Errors map to their answer with fault.Classify.
func (s *Service) Release(ctx context.Context, req KeyRequest) (*release.Result, error) {
	rec := keyRecord(req)
	claims, err := s.cfg.Tokens.VerifyClaims(ctx, req.Token, s.cfg.ReleaseAudience)
	if err != nil {
		return nil, s.releaseFailed(ctx, rec, err, false, req.Done)
	}
	rec.Subject, _ = claims["sub"].(string)
	rec.TokenID, _ = claims["jti"].(string)
	if tee, ok := claims["tee"].(map[string]any); ok {
		rec.TEE, _ = tee["kind"].(string)
	}
	res, err := s.cfg.Release.Release(ctx, release.Request{Name: req.Name, Version: req.Version, Claims: claims})
	if err != nil {
		return nil, s.releaseFailed(ctx, rec, err, true, req.Done)
	}
	rec.Outcome, rec.KeyVersion = OutcomeGranted, res.Version
	rec.PolicyID, rec.PolicySHA256 = res.PolicyID, res.PolicySHA256
	rec.Reasons = []string{"release policy allowed"}
	done(req.Done)
	// No key leaves without its audit record.
	if _, err := s.cfg.Audit.AppendAudit(ctx, rec); err != nil {
		s.metrics.releases.WithLabelValues(wire.CodeStoreUnavailable).Inc()
		return nil, err
	}
	s.metrics.releases.WithLabelValues(OutcomeGranted).Inc()
	s.log.Info("key released", "key", res.Name, "version", res.Version, "sub", rec.Subject, "jti", rec.TokenID,
		"tee", rec.TEE, "policy", res.PolicyID)
	return res, nil
}

// RefuseRelease audits a release attempt refused before its token was
// read (a body over the limit, no bearer token, a malformed body) and
// returns err, to answer. req.Token and req.Version are not used.
func (s *Service) RefuseRelease(ctx context.Context, req KeyRequest, err error) error {
	req.Version = 0
	return s.releaseFailed(ctx, keyRecord(req), err, false, req.Done)
}

// keyRecord starts the audit record of a release attempt.
func keyRecord(req KeyRequest) store.AuditRecord {
	at := req.Time
	if at.IsZero() {
		at = time.Now()
	}
	return store.AuditRecord{Time: at.UTC(), Event: "release", KeyName: AuditKeyName(req.Name), Remote: req.Remote,
		KeyVersion: req.Version}
}

// releaseFailed audits a failed release attempt and returns err. authed:
// the token was valid; attempts without one prove nothing, and their
// audit rows come out of the client's budget.
func (s *Service) releaseFailed(ctx context.Context, rec store.AuditRecord, err error, authed bool, cpuDone func()) error {
	done(cpuDone)
	_, body := fault.Classify(err)
	var denied *release.DeniedError
	if errors.As(err, &denied) {
		rec.PolicyID, rec.PolicySHA256, rec.KeyVersion = denied.PolicyID, denied.PolicySHA256, denied.Version
	}
	rec.Outcome, rec.Reasons = body.Error, body.Reasons
	if errors.Is(err, release.ErrInvalidName) {
		rec.Reasons = append(slices.Clone(rec.Reasons), "invalid key name (recorded escaped)")
	}
	s.metrics.releases.WithLabelValues(body.Error).Inc()
	ctx = context.WithoutCancel(ctx)
	if !authed {
		s.auditFailure(ctx, rec)
	} else if _, aerr := s.cfg.Audit.AppendAudit(ctx, rec); aerr != nil {
		s.log.Error("writing audit record", "err", aerr)
	}
	return err
}

// AuditKeyName is a key name as the audit log and the log record it: a
// valid name (release.CheckName) as it is, anything else escaped and
// bounded, so that a name from a request can neither forge a row nor drive
// the terminal of whoever reads the log.
func AuditKeyName(name string) string {
	if release.CheckName(name) == nil {
		return name
	}
	return termsafe.Clip(name, maxAuditKeyName)
}
