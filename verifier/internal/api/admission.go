package api

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

// Defaults of the admission control (Config.MaxInFlight, MaxQueue,
// QueueTimeout).
const (
	// DefaultMaxQueue admits a few thousand agents booting at once.
	DefaultMaxQueue = 4096
	// DefaultQueueTimeout stays below the agents' request timeout (30 s),
	// so that a refused agent still has time to retry.
	DefaultQueueTimeout = 20 * time.Second
	// BodyReadTimeout bounds reading a request's body once it is the
	// request's turn. An agent sent its body long before (it waits in the
	// socket buffers); a client that is still sending it slowly is cut
	// off, so that it cannot hold a place for long.
	BodyReadTimeout = 10 * time.Second
	// buffersPerSlot is how many requests may hold their body in memory
	// per processing slot: enough to keep the slots busy.
	buffersPerSlot = 4
)

// DefaultMaxInFlight is the number of attestations and key releases
// processed at once by default: two per CPU the Go scheduler uses.
func DefaultMaxInFlight() int { return 2 * runtime.GOMAXPROCS(0) }

// Outcomes of admission, the label of admissions_total.
const (
	admitted       = "admitted"
	admitQueueFull = "queue_full"
	admitTimeout   = "timeout"
	admitAbandoned = "abandoned"
)

// admission keeps the expensive requests (attestation, key release) from
// running all at once, and from holding their bodies in memory all at
// once. A request passes three stages, in arrival order:
//
//  1. the queue: at most maxQueue requests are admitted at once (waiting,
//     processing or writing to the store); more are refused at once. A
//     queued request has not read its body: it costs a goroutine and the
//     connection's buffers.
//  2. a buffer: at most buffersPerSlot × the slots read and hold their
//     body; the body must arrive within BodyReadTimeout.
//  3. a processing slot, for the CPU work (decoding, appraisal, signing,
//     release policy). The slot and the buffer are freed before the store
//     write, so that requests waiting for the (group) commit hold neither.
//
// Stages 2 and 3 must be reached within timeout of admission; otherwise
// (and when the queue is full) the answer is 503 overloaded with
// Retry-After, which agents retry. A burst of a thousand agents is thus
// served in turn, slowly, instead of failing, and the verifier's memory
// stays bounded by the buffers and slots, not by the number of clients.
type admission struct {
	maxQueue int64
	queued   atomic.Int64
	buffers  *semaphore.Weighted
	slots    *semaphore.Weighted
	timeout  time.Duration
	metrics  *Metrics
}

func newAdmission(maxInFlight, maxQueue int, timeout time.Duration, m *Metrics) *admission {
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight()
	}
	if maxQueue <= 0 {
		maxQueue = DefaultMaxQueue
	}
	if timeout <= 0 {
		timeout = DefaultQueueTimeout
	}
	return &admission{
		maxQueue: int64(maxQueue),
		buffers:  semaphore.NewWeighted(int64(buffersPerSlot * maxInFlight)),
		slots:    semaphore.NewWeighted(int64(maxInFlight)),
		timeout:  timeout,
		metrics:  m,
	}
}

// ticket is one admitted request's hold on the admission stages.
type ticket struct {
	a        *admission
	start    time.Time
	deadline time.Time
	buffer   bool // holds a buffer
	slot     bool // holds a processing slot
	closed   bool
}

// enter admits a request to the queue and waits for a buffer. It returns
// fault.ErrOverloaded when the queue is full or the wait timed out, and ctx's
// error when ctx ended first (the client left).
func (a *admission) enter(ctx context.Context) (*ticket, error) {
	if a.queued.Add(1) > a.maxQueue {
		a.queued.Add(-1)
		a.metrics.admissions.WithLabelValues(admitQueueFull).Inc()
		return nil, fault.ErrOverloaded
	}
	a.metrics.queued.Inc()
	now := time.Now()
	t := &ticket{a: a, start: now, deadline: now.Add(a.timeout)}
	if err := t.wait(ctx, a.buffers); err != nil {
		t.close()
		return nil, err
	}
	t.buffer = true
	return t, nil
}

// process waits for a processing slot; errors as for enter.
func (t *ticket) process(ctx context.Context) error {
	if err := t.wait(ctx, t.a.slots); err != nil {
		return err
	}
	t.slot = true
	t.a.metrics.admissionWait.Observe(time.Since(t.start).Seconds())
	t.a.metrics.admissions.WithLabelValues(admitted).Inc()
	t.a.metrics.inFlight.Inc()
	return nil
}

// wait acquires one unit of s, in arrival order, until the deadline.
func (t *ticket) wait(ctx context.Context, s *semaphore.Weighted) error {
	wctx, cancel := context.WithDeadline(ctx, t.deadline)
	defer cancel()
	if err := s.Acquire(wctx, 1); err != nil {
		t.a.metrics.admissionWait.Observe(time.Since(t.start).Seconds())
		if ctx.Err() != nil {
			t.a.metrics.admissions.WithLabelValues(admitAbandoned).Inc()
			return ctx.Err()
		}
		t.a.metrics.admissions.WithLabelValues(admitTimeout).Inc()
		return fault.ErrOverloaded
	}
	return nil
}

// done frees the processing slot and the buffer; calls after the first
// do nothing. Call it when the CPU work is over, before the store write.
func (t *ticket) done() {
	if t.slot {
		t.slot = false
		t.a.metrics.inFlight.Dec()
		t.a.slots.Release(1)
	}
	if t.buffer {
		t.buffer = false
		t.a.buffers.Release(1)
	}
}

// close ends the request's admission (done, and out of the queue); calls
// after the first do nothing.
func (t *ticket) close() {
	t.done()
	if !t.closed {
		t.closed = true
		t.a.queued.Add(-1)
		t.a.metrics.queued.Dec()
	}
}

// admit admits r to the queue and waits for its turn to read the body,
// whose reading it then bounds by BodyReadTimeout. When it returns false
// the request was answered (503 overloaded) or its client left; otherwise
// defer t.close(), read the body and call h.process.
func (h *handler) admit(w http.ResponseWriter, r *http.Request) (t *ticket, ok bool) {
	t, err := h.admission.enter(r.Context())
	if err != nil {
		h.refuse(w, r, err)
		return nil, false
	}
	// Not supported by every ResponseWriter (tests'); the server's read
	// timeout stays then.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(BodyReadTimeout))
	return t, true
}

// process waits for t's processing slot; false: as for admit. Call t.done
// when the CPU work is over.
func (h *handler) process(w http.ResponseWriter, r *http.Request, t *ticket) bool {
	if err := t.process(r.Context()); err != nil {
		h.refuse(w, r, err)
		return false
	}
	return true
}

// refuse answers an admission failure: 503 overloaded, or nothing when the
// client left.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, fault.ErrOverloaded) {
		h.writeError(w, r, err)
		return
	}
	h.log.Debug("client left while queued", "path", r.URL.Path, "err", err)
}
