package api

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the verifier's Prometheus metrics, registered on a registry
// the caller owns (no global registry).
type Metrics struct {
	appraisals        *prometheus.CounterVec
	appraisalDuration *prometheus.HistogramVec
	requestDuration   *prometheus.HistogramVec
	noncesIssued      prometheus.Counter
	nonceRedemptions  *prometheus.CounterVec
	errors            *prometheus.CounterVec
	tokensIssued      *prometheus.CounterVec
	releases          *prometheus.CounterVec
	admissions        *prometheus.CounterVec
	admissionWait     prometheus.Histogram
	queued            prometheus.Gauge
	inFlight          prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		appraisals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "appraisals_total",
			Help: "Appraisals by TEE kind and verdict (affirming, warning, contraindicated, error).",
		}, []string{"tee", "verdict"}),
		appraisalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "confidant_verifier", Name: "appraisal_duration_seconds",
			Help:    "Time to appraise evidence (verification and policy), by TEE kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"tee"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "confidant_verifier", Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "method", "code"}),
		noncesIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "nonces_issued_total",
			Help: "Challenge nonces issued.",
		}),
		nonceRedemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "nonce_redemptions_total",
			Help: "Nonce redemptions by result (ok, unknown, expired, reused, error).",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "errors_total",
			Help: "Error responses by error code.",
		}, []string{"code"}),
		tokensIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "tokens_issued_total",
			Help: "Attestation tokens issued, by TEE kind.",
		}, []string{"tee"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "key_releases_total",
			Help: "Key release attempts by result (granted, or the error code).",
		}, []string{"result"}),
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
	for _, c := range []prometheus.Collector{m.appraisals, m.appraisalDuration, m.requestDuration,
		m.noncesIssued, m.nonceRedemptions, m.errors, m.tokensIssued, m.releases,
		m.admissions, m.admissionWait, m.queued, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
