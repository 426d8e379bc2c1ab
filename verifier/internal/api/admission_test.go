package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

// value reads a counter or a gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func testMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAdmissionStages(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		// run uses an admission with one slot (so four buffers), a queue of
		// six and a 50 ms timeout, and returns the outcome to check.
		run     func(t *testing.T, a *admission) error
		wantErr error
		// wantResult is the admissions_total label the outcome counts as.
		wantResult string
	}{
		"admitted": {run: func(t *testing.T, a *admission) error {
			tk, err := a.enter(ctx)
			if err != nil {
				return err
			}
			defer tk.close()
			return tk.process(ctx)
		}, wantResult: admitted},
		"queue full": {run: func(t *testing.T, a *admission) error {
			a.maxQueue = 3 // fewer than the buffers: the queue fills first
			for range 3 {
				if _, err := a.enter(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// Refused at once, not after the timeout.
			a.timeout = time.Hour
			_, err := a.enter(ctx)
			return err
		}, wantErr: fault.ErrOverloaded, wantResult: admitQueueFull},
		"no buffer in time": {run: func(t *testing.T, a *admission) error {
			for range 4 {
				if _, err := a.enter(ctx); err != nil {
					t.Fatal(err)
				}
			}
			_, err := a.enter(ctx)
			return err
		}, wantErr: fault.ErrOverloaded, wantResult: admitTimeout},
		"no slot in time": {run: func(t *testing.T, a *admission) error {
			first, err := a.enter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := first.process(ctx); err != nil {
				t.Fatal(err)
			}
			second, err := a.enter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return second.process(ctx)
		}, wantErr: fault.ErrOverloaded, wantResult: admitTimeout},
		"client left": {run: func(t *testing.T, a *admission) error {
			first, _ := a.enter(ctx)
			if err := first.process(ctx); err != nil {
				t.Fatal(err)
			}
			second, _ := a.enter(ctx)
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			return second.process(cctx)
		}, wantErr: context.Canceled, wantResult: admitAbandoned},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m := testMetrics(t)
			a := newAdmission(1, 6, 50*time.Millisecond, m)
			err := tt.run(t, a)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if n := value(m.admissions.WithLabelValues(tt.wantResult)); n < 1 {
				t.Fatalf("admissions_total{result=%q} = %v", tt.wantResult, n)
			}
		})
	}
}

// TestAdmissionRelease: done and close free what the ticket holds exactly
// once, however often they are called, and a freed slot goes to the next
// request.
func TestAdmissionRelease(t *testing.T) {
	ctx := context.Background()
	m := testMetrics(t)
	a := newAdmission(1, 2, time.Second, m)
	first, err := a.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.process(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	second, err := a.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() { got <- second.process(ctx) }()
	first.done()
	first.done()
	if err := <-got; err != nil {
		t.Fatalf("second request after the first was done: %v", err)
	}
	first.close()
	first.close()
	// One slot, held by second: nothing was released twice.
	if a.slots.TryAcquire(1) {
		t.Fatal("a slot was released twice")
	}
	if a.queued.Load() != 1 || value(m.queued) != 1 || value(m.inFlight) != 1 {
		t.Fatalf("queued %d (gauge %v), in flight %v; want 1, 1, 1", a.queued.Load(), value(m.queued), value(m.inFlight))
	}
	second.close()
	if a.queued.Load() != 0 || !a.slots.TryAcquire(1) || !a.buffers.TryAcquire(4) {
		t.Fatal("closing did not free everything")
	}
}

// TestOverloadedAnswer: a refused attest or release request is a 503
// overloaded with Retry-After, before its body is read; a request whose
// client left gets no answer.
func TestOverloadedAnswer(t *testing.T) {
	m := testMetrics(t)
	h := &handler{base: base{log: slog.New(slog.DiscardHandler), metrics: m}}
	h.admission = newAdmission(1, 1, time.Second, m)
	hold, err := h.admission.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.close()
	for name, serve := range map[string]http.HandlerFunc{"attest": h.attest, "release": h.release} {
		t.Run(name, func(t *testing.T) {
			body := &readCounter{r: strings.NewReader(`{}`)}
			req := httptest.NewRequest(http.MethodPost, "/v1/"+name, body)
			w := httptest.NewRecorder()
			serve(w, req)
			var e ErrorBody
			if w.Code != http.StatusServiceUnavailable || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error != CodeOverloaded {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if w.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			if body.n != 0 {
				t.Errorf("%d body bytes read by a refused request", body.n)
			}
		})
	}
	t.Run("client left", func(t *testing.T) {
		h := &handler{base: base{log: slog.New(slog.DiscardHandler), metrics: m}}
		h.admission = newAdmission(1, 8, time.Minute, m)
		for range 4 {
			if _, err := h.admission.enter(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := httptest.NewRecorder()
		h.attest(w, httptest.NewRequest(http.MethodPost, "/v1/attest", strings.NewReader(`{}`)).WithContext(ctx))
		if w.Body.Len() != 0 {
			t.Fatalf("answered a client that left: %d %s", w.Code, w.Body)
		}
	})
}

type readCounter struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
