package attest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the transactions' Prometheus metrics, registered on a
// registry the caller owns (no global registry).
type Metrics struct {
	appraisals        *prometheus.CounterVec
	appraisalDuration *prometheus.HistogramVec
	nonceRedemptions  *prometheus.CounterVec
	tokensIssued      *prometheus.CounterVec
	releases          *prometheus.CounterVec
	auditSuppressed   prometheus.Counter
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
		nonceRedemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "nonce_redemptions_total",
			Help: "Nonce redemptions by result (ok, unknown, expired, reused, error).",
		}, []string{"result"}),
		tokensIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "tokens_issued_total",
			Help: "Attestation tokens issued, by TEE kind.",
		}, []string{"tee"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "key_releases_total",
			Help: "Key release attempts by result (granted, or the error code).",
		}, []string{"result"}),
		auditSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "confidant_verifier", Name: "audit_suppressed_total",
			Help: "Failed attempts without a genuine nonce or a valid token whose audit row was suppressed (over the per-client share; summarized per client).",
		}),
	}
	for _, c := range []prometheus.Collector{m.appraisals, m.appraisalDuration, m.nonceRedemptions, m.tokensIssued,
		m.releases, m.auditSuppressed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
