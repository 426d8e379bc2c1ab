package loadgen

import (
	"bytes"
	"context"
	"crypto/subtle"
	"sync"
	"time"
)

// releasedKey is the expected key, or the first one unwrapped; every key
// unwrapped must equal it.
type releasedKey struct {
	mu  sync.Mutex
	key []byte
}

func (r *releasedKey) check(key []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.key == nil {
		r.key = bytes.Clone(key)
		return nil
	}
	if subtle.ConstantTimeCompare(r.key, key) != 1 {
		return ErrMismatch
	}
	return nil
}

// runFlow runs one flow, due at flowStart, and records it. A flow cut short
// by ctx is not recorded.
func runFlow(ctx context.Context, cfg Config, a *Agent, w *workerStats, released *releasedKey, flowStart time.Time) {
	fail := func(step string, err error) {
		if ctx.Err() != nil {
			return
		}
		code := Code(err)
		w.attempted++
		w.errors[code]++
		w.stepErrs[step][code]++
		if _, ok := w.examples[code]; !ok {
			w.examples[code] = err.Error()
		}
	}
	timed := func(step string, f func() error) error {
		t := time.Now()
		err := f()
		if ctx.Err() == nil {
			w.steps[step] = append(w.steps[step], time.Since(t))
		}
		if err != nil {
			fail(step, err)
		}
		return err
	}
	var (
		nonce []byte
		body  []byte
		token string
	)
	if timed(StepChallenge, func() (err error) { nonce, err = cfg.Client.Challenge(ctx); return err }) != nil {
		return
	}
	if timed(StepEvidence, func() (err error) {
		if body, err = a.Evidence(nonce); err != nil {
			err = &genError{err}
		}
		return err
	}) != nil {
		return
	}
	if timed(StepAttest, func() (err error) { token, err = cfg.Client.Attest(ctx, body); return err }) != nil {
		return
	}
	if cfg.ReleaseKey != "" {
		if timed(StepRelease, func() error {
			jwe, err := cfg.Client.Release(ctx, cfg.ReleaseKey, token)
			if err != nil {
				return err
			}
			key, err := a.Unwrap(jwe)
			if err != nil {
				return err
			}
			return released.check(key)
		}) != nil {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.attempted++
	w.flows = append(w.flows, time.Since(flowStart))
	if w.token == "" {
		w.token = token
	}
}

// genError marks a failure of the generator itself.
type genError struct{ err error }

func (e *genError) Error() string { return "generating evidence: " + e.err.Error() }
func (e *genError) Unwrap() error { return e.err }
