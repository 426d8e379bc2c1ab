package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

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
// its client has had its share recorded: then it is only counted, for the
// next summary.
func (h *handler) auditFailure(ctx context.Context, r *http.Request, rec store.AuditRecord) {
	now := h.now()
	recorded := h.failures.take(remoteHost(r), now, func(ok bool, b *bucket) {
		if ok {
			return
		}
		if b.suppressed == 0 {
			b.first, b.codes = now, map[string]int{}
		}
		b.suppressed++
		b.last = now
		b.codes[rec.Outcome]++
	})
	if !recorded {
		h.metrics.auditSuppressed.Inc()
		return
	}
	if _, err := h.Store.AppendAudit(ctx, rec); err != nil {
		h.log.Error("writing audit record", "err", err)
	}
}

// summarizeSuppressed writes one audit row per client with failures not
// recorded since the last summary.
func (h *handler) summarizeSuppressed(ctx context.Context) {
	now := h.now().UTC()
	var recs []store.AuditRecord
	h.failures.mu.Lock()
	for client, b := range h.failures.m {
		if b.suppressed == 0 {
			continue
		}
		recs = append(recs, store.AuditRecord{Time: now, Event: EventFailuresSuppressed, Outcome: OutcomeFailuresSuppressed,
			Remote: client, Reasons: suppressedReasons(client, b)})
		b.suppressed, b.codes = 0, nil
	}
	h.failures.mu.Unlock()
	slices.SortFunc(recs, func(a, b store.AuditRecord) int { return strings.Compare(a.Remote, b.Remote) })
	for _, rec := range recs {
		if _, err := h.Store.AppendAudit(ctx, rec); err != nil {
			h.log.Error("writing the summary of unrecorded failures", "remote", rec.Remote, "summary", rec.Reasons, "err", err)
		}
	}
}

func suppressedReasons(client string, b *bucket) []string {
	codes := make([]string, 0, len(b.codes))
	for code, n := range b.codes {
		codes = append(codes, fmt.Sprintf("%s %d", code, n))
	}
	slices.Sort(codes)
	return []string{
		fmt.Sprintf("%d more failed attempts from %s not recorded, from %s to %s", b.suppressed, client,
			b.first.UTC().Format(time.RFC3339), b.last.UTC().Format(time.RFC3339)),
		"by code: " + strings.Join(codes, ", "),
	}
}

// Run writes the summaries of unrecorded failures every
// SuppressedSummaryEvery, and once more when ctx ends.
func (a *API) Run(ctx context.Context) error {
	t := time.NewTicker(SuppressedSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			a.h.summarizeSuppressed(sctx)
			return nil
		case <-t.C:
			a.h.summarizeSuppressed(ctx)
		}
	}
}
