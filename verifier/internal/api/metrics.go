package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the HTTP API's Prometheus metrics (requests, errors,
// admission, nonces issued), registered on a registry the caller owns (no
// global registry); the transactions' are attest.Metrics.
type Metrics struct {
	requestDuration *prometheus.HistogramVec
	noncesIssued    prometheus.Counter
	errors          *prometheus.CounterVec
	admissions      *prometheus.CounterVec
	admissionWait   prometheus.Histogram
	queued          prometheus.Gauge
	inFlight        prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "confidant_verifier", Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "method", "code"}),
		noncesIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "nonces_issued_total",
			Help: "Challenge nonces issued.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "errors_total",
			Help: "Error responses by error code.",
		}, []string{"code"}),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "admissions_total",
			Help: "Attest and release requests by admission outcome (admitted, queue_full, timeout, abandoned).",
		}, []string{"result"}),
		admissionWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "confidant_verifier", Name: "admission_wait_seconds",
			Help:    "Time attest and release requests waited for a processing slot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 17),
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "confidant_verifier", Name: "admission_queued",
			Help: "Attest and release requests admitted and not finished (waiting or processing).",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "confidant_verifier", Name: "admission_in_flight",
			Help: "Attest and release requests holding a processing slot.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requestDuration, m.noncesIssued, m.errors,
		m.admissions, m.admissionWait, m.queued, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Label values of the request metrics come from fixed sets, never from
// the request as sent: any client can invent methods and paths, and every
// new label value is a new time series kept for the life of the process.
const (
	// routeUnmatched is the route label of a request no route matched.
	routeUnmatched = "unmatched"
	// methodOther is the method label of a non-standard method.
	methodOther = "other"
)

// methodLabel is m if it is a standard method, else methodOther.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return methodOther
}

// routeSet lists the route patterns of r: the route label's values besides
// routeUnmatched.
func routeSet(r chi.Routes) (map[string]bool, error) {
	set := map[string]bool{}
	err := chi.Walk(r, func(_ string, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		set[route] = true
		return nil
	})
	return set, err
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// instrument observes each request's duration by route pattern, method and
// status code, each from a fixed set.
func (h *handler) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if !h.routes[route] {
			route = routeUnmatched
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		h.metrics.requestDuration.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(rec.status)).
			Observe(time.Since(start).Seconds())
	})
}
