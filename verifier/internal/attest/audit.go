package attest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/clients"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// The audit of failed attempts that prove nothing: an attestation without
// a genuine, unspent nonce, a key release without a valid token. Anyone can
// send those, as fast as they like; each recorded one costs a synced store
// write. So each client (remote IP) may have DefaultFailureAuditBurst of
// them recorded at once and DefaultFailureAuditRate per second after that;
// the others are counted, and every SuppressedSummaryEvery (and at
// shutdown) one row per client says how many were not recorded, between
// which times, by error code. Attempts that spend a genuine nonce (their
// store write is owed anyway) and release attempts with a valid token are
// always recorded.
const (
	DefaultFailureAuditRate  = 1.0
	DefaultFailureAuditBurst = 20
	SuppressedSummaryEvery   = time.Minute
)

// The summary row's event and outcome.
const (
	EventFailuresSuppressed   = "failures_suppressed"
	OutcomeFailuresSuppressed = "audit_suppressed"
)

// auditFailure records rec, a failed attempt that proved nothing, unless
// its client (rec.Remote) has had its share recorded: then it is only
// counted, for the next summary.
func (s *Service) auditFailure(ctx context.Context, rec store.AuditRecord) {
	now := s.cfg.Now()
	recorded := s.failures.Take(rec.Remote, now, func(ok bool, b *clients.Bucket) {
		if ok {
			return
		}
		if b.Suppressed == 0 {
			b.First, b.Codes = now, map[string]int{}
		}
		b.Suppressed++
		b.Last = now
		b.Codes[rec.Outcome]++
	})
	if !recorded {
		s.metrics.auditSuppressed.Inc()
		return
	}
	if _, err := s.cfg.Audit.AppendAudit(ctx, rec); err != nil {
		s.log.Error("writing audit record", "err", err)
	}
}

// summarizeSuppressed writes one audit row per client with failures not
// recorded since the last summary.
func (s *Service) summarizeSuppressed(ctx context.Context) {
	now := s.cfg.Now().UTC()
	var recs []store.AuditRecord
	s.failures.Each(func(client string, b *clients.Bucket) {
		if b.Suppressed == 0 {
			return
		}
		recs = append(recs, store.AuditRecord{Time: now, Event: EventFailuresSuppressed, Outcome: OutcomeFailuresSuppressed,
			Remote: client, Reasons: suppressedReasons(client, b)})
		b.Suppressed, b.Codes = 0, nil
	})
	slices.SortFunc(recs, func(a, b store.AuditRecord) int { return strings.Compare(a.Remote, b.Remote) })
	for _, rec := range recs {
		if _, err := s.cfg.Audit.AppendAudit(ctx, rec); err != nil {
			s.log.Error("writing the summary of unrecorded failures", "remote", rec.Remote, "summary", rec.Reasons, "err", err)
		}
	}
}

func suppressedReasons(client string, b *clients.Bucket) []string {
	codes := make([]string, 0, len(b.Codes))
	for code, n := range b.Codes {
		codes = append(codes, fmt.Sprintf("%s %d", code, n))
	}
	slices.Sort(codes)
	return []string{
		fmt.Sprintf("%d more failed attempts from %s not recorded, from %s to %s", b.Suppressed, client,
			b.First.UTC().Format(time.RFC3339), b.Last.UTC().Format(time.RFC3339)),
		"by code: " + strings.Join(codes, ", "),
	}
}

// Run writes the summaries of unrecorded failures every
// SuppressedSummaryEvery, and once more when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(SuppressedSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			s.summarizeSuppressed(sctx)
			return nil
		case <-t.C:
			s.summarizeSuppressed(ctx)
		}
	}
}
