package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a webhook delivery attempt, the outcome label of
// jobsd_webhook_attempts_total.
const (
	WebhookDelivered = "delivered" // a 2xx
	WebhookRetrying  = "retrying"  // failed; another attempt is scheduled
	WebhookFailed    = "failed"    // failed for good: retries ran out, 410, or a permanent error
)

// Webhooks is the delivery loop's series. A nil *Webhooks records nothing.
type Webhooks struct {
	attempts   *prometheus.CounterVec
	duration   prometheus.Histogram
	latency    prometheus.Histogram
	disabled   prometheus.Counter
	due        prometheus.Gauge
	outboxJobs prometheus.Gauge
	age        prometheus.Gauge
	yielding   prometheus.Gauge
	yielded    prometheus.Counter
}

// NewWebhooks registers the delivery loop's series on reg.
func NewWebhooks(reg prometheus.Registerer) *Webhooks {
	w := &Webhooks{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobsd_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome: delivered (2xx), retrying (failed, retry scheduled), failed (for good).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jobsd_webhook_attempt_seconds",
			Help:    "Duration of one webhook delivery attempt, request to answer.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jobsd_webhook_event_age_seconds",
			Help:    "Time from the event (the job's end) to the end of each attempt; for delivered first attempts, the delivery latency.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400},
		}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobsd_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled by jobsd (410 Gone, or a long run of failures).",
		}),
		due: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_webhook_deliveries_due",
			Help: "Webhook deliveries due now and not yet sent: retries, test events, replays (read every 5 s by the delivery loop).",
		}),
		outboxJobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_webhook_outbox_jobs",
			Help: "Ended jobs in the webhook outbox not yet expanded into events: each becomes one event per endpoint of its owner that takes it, possibly none (read every 5 s by the delivery loop).",
		}),
		age: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_webhook_queue_age_seconds",
			Help: "How long the oldest due webhook delivery or outbox row has waited; 0 when none.",
		}),
		yielding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobsd_webhook_yielding",
			Help: "1 while the delivery loop claims nothing because the job queue has a backlog (JOBS_WEBHOOK_YIELD_BACKLOG), else 0.",
		}),
		yielded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobsd_webhook_yielded_seconds_total",
			Help: "Seconds the delivery loop has spent yielding to the job queue's backlog.",
		}),
	}
	for _, o := range []string{WebhookDelivered, WebhookRetrying, WebhookFailed} {
		w.attempts.WithLabelValues(o)
	}
	reg.MustRegister(w.attempts, w.duration, w.latency, w.disabled, w.due, w.outboxJobs, w.age, w.yielding, w.yielded)
	return w
}

// Attempt counts one attempt, its duration and the event's age at its end.
func (w *Webhooks) Attempt(outcome string, took, eventAge time.Duration) {
	if w == nil {
		return
	}
	w.attempts.WithLabelValues(outcome).Inc()
	w.duration.Observe(took.Seconds())
	w.latency.Observe(eventAge.Seconds())
}

// Disabled counts an endpoint disabled.
func (w *Webhooks) Disabled() {
	if w == nil {
		return
	}
	w.disabled.Inc()
}

// Backlog sets the gauges of what waits to be sent: due deliveries, ended
// jobs in the outbox, and the oldest wait of either.
func (w *Webhooks) Backlog(due, outboxJobs int64, oldest time.Duration) {
	if w == nil {
		return
	}
	w.due.Set(float64(due))
	w.outboxJobs.Set(float64(outboxJobs))
	w.age.Set(oldest.Seconds())
}

// Yielding sets whether the delivery loop yields to the queue's backlog.
func (w *Webhooks) Yielding(on bool) {
	if w == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	w.yielding.Set(v)
}

// Yielded counts time the delivery loop spent yielding.
func (w *Webhooks) Yielded(d time.Duration) {
	if w == nil {
		return
	}
	w.yielded.Add(d.Seconds())
}
