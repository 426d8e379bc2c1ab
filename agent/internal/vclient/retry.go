package vclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Retry bounds the retries of Attest. Zero values are documented per field.
type Retry struct {
	// Budget is the total time Attest may take, from its start; 0:
	// DefaultBudget. No attempt starts after it, and no request outlives it.
	Budget time.Duration
	// MaxAttempts bounds the attempts of each retried step (getting a token;
	// getting the key released); 0: DefaultMaxAttempts, which is high enough
	// that the time budget, not the count, ends the retries even when every
	// attempt fails at once (a refused connection).
	MaxAttempts int
	// BaseDelay is the backoff ceiling after the first failure, doubled
	// after each further one; 0: DefaultBaseDelay.
	BaseDelay time.Duration
	// MaxDelay caps the backoff ceiling; 0: DefaultMaxDelay.
	MaxDelay time.Duration
}

// Defaults of Retry.
const (
	DefaultBudget      = 60 * time.Second
	DefaultMaxAttempts = 1000
	DefaultBaseDelay   = 500 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
)

func (r Retry) withDefaults() Retry {
	if r.Budget <= 0 {
		r.Budget = DefaultBudget
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = DefaultBaseDelay
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = DefaultMaxDelay
	}
	if r.MaxDelay < r.BaseDelay {
		r.MaxDelay = r.BaseDelay
	}
	return r
}

// Clock is the time source of the retries, injected so tests run without
// waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits d or until ctx is done.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// FullJitter returns a uniformly random duration in [0, ceil]: "full
// jitter" backoff, which spreads guests that failed together.
func FullJitter(ceil time.Duration) time.Duration {
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// Attempt reports one attempt to the progress callback.
type Attempt struct {
	// Stage is the step the attempt ended in: "challenge", "evidence",
	// "attest" or "release".
	Stage string
	// Number counts the attempts of the retried step, from 1.
	Number int
	// Err is nil when the attempt succeeded.
	Err error
	// Retry says another attempt follows, after Wait.
	Retry bool
	Wait  time.Duration
	// Detail says what a successful attempt got (token id and expiry,
	// wrapped key size); never a secret.
	Detail string
}

// String is the attempt as one console line.
func (a Attempt) String() string {
	switch {
	case a.Err == nil && a.Detail != "":
		return fmt.Sprintf("%s: attempt %d succeeded: %s", a.Stage, a.Number, a.Detail)
	case a.Err == nil:
		return fmt.Sprintf("%s: attempt %d succeeded", a.Stage, a.Number)
	case a.Retry:
		return fmt.Sprintf("%s: attempt %d failed: %v; retrying in %v", a.Stage, a.Number, a.Err, a.Wait.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: attempt %d failed: %v; giving up", a.Stage, a.Number, a.Err)
}

// step names what an attempt was doing and which sentinel its error gets.
type step struct {
	name     string
	sentinel error
	// final: errors of this step are never retried.
	final bool
}

var (
	stepChallenge = step{name: "challenge", sentinel: ErrChallenge}
	stepEvidence  = step{name: "evidence", sentinel: ErrEvidence, final: true}
	stepAttest    = step{name: "attest", sentinel: ErrAttest}
	stepRelease   = step{name: "release", sentinel: ErrRelease}
)

// retrier runs attempts under one budget.
type retrier struct {
	policy   Retry
	clock    Clock
	jitter   func(time.Duration) time.Duration
	progress func(Attempt)
	timeout  time.Duration
	start    time.Time
	deadline time.Time
}

// run calls op until it succeeds, fails with an error that is not worth
// retrying, or the attempts or the time budget run out. op returns the
// step it ended in and, on success, a detail for the progress line. The
// error returned matches the step's sentinel (and ErrBudgetExhausted when
// the budget ran out); first is the step op starts with.
func (r *retrier) run(ctx context.Context, first step, op func(ctx context.Context) (step, string, error)) error {
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		remaining := r.deadline.Sub(r.clock.Now())
		if remaining <= 0 {
			return fmt.Errorf("%w: %w: no time left for attempt %d (budget %v)", first.sentinel, ErrBudgetExhausted, n, r.policy.Budget)
		}
		actx, cancel := context.WithTimeout(ctx, min(r.timeout, remaining))
		st, detail, err := op(actx)
		cancel()
		a := Attempt{Stage: st.name, Number: n, Err: err, Detail: detail}
		if err == nil {
			r.progress(a)
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			// Cancelled while the attempt ran: report the cancellation,
			// whatever the attempt itself ended with.
			r.progress(a)
			return fmt.Errorf("%w: %w: %w", st.sentinel, cerr, err)
		}
		if st.final || !retryable(err) {
			r.progress(a)
			return fmt.Errorf("%w: %w", st.sentinel, err)
		}
		elapsed := r.clock.Now().Sub(r.start).Round(time.Millisecond)
		if n >= r.policy.MaxAttempts {
			r.progress(a)
			return fmt.Errorf("%w: %w after %d attempts in %v: %w", st.sentinel, ErrBudgetExhausted, n, elapsed, err)
		}
		wait := r.backoff(n, err)
		if r.clock.Now().Add(wait).After(r.deadline) {
			r.progress(a)
			return fmt.Errorf("%w: %w after %d attempts in %v (budget %v): %w", st.sentinel, ErrBudgetExhausted, n, elapsed, r.policy.Budget, err)
		}
		a.Retry, a.Wait = true, wait
		r.progress(a)
		if err := r.clock.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("%w: waiting to retry: %w", st.sentinel, err)
		}
	}
}

// backoff is the wait after the n-th failed attempt: full jitter under a
// ceiling of BaseDelay·2^(n-1), at most MaxDelay, and at least what a
// Retry-After header asked for (also capped by MaxDelay).
func (r *retrier) backoff(n int, err error) time.Duration {
	ceil := r.policy.MaxDelay
	if shift := n - 1; shift < 30 {
		if d := r.policy.BaseDelay << shift; d > 0 && d < ceil {
			ceil = d
		}
	}
	wait := min(max(r.jitter(ceil), 0), ceil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > wait {
		wait = min(apiErr.RetryAfter, r.policy.MaxDelay)
	}
	return wait
}

// retryable reports whether another attempt may succeed: answers with
// 5xx, 408 or 429, and transport failures (connection refused or reset,
// timeouts). Other answers, malformed responses and TLS verification
// failures (a wrong certificate does not fix itself) are final.
func retryable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Retryable()
	}
	if errors.Is(err, ErrResponse) || errors.Is(err, ErrConfig) {
		return false
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		invalidCert      x509.CertificateInvalidError
		hostname         x509.HostnameError
		verification     *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &invalidCert), errors.As(err, &hostname),
		errors.As(err, &verification), errors.As(err, &recordHeader), errors.As(err, &alert):
		return false
	}
	return true
}
