package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/store"
)

// QueueStatsTTL is how long one reading of the queue serves scrapes: several
// Prometheus servers, or a dashboard refreshing fast, cost the database one
// query per QueueStatsTTL, not one per scrape.
const QueueStatsTTL = 5 * time.Second

// queueStatsTimeout bounds a reading; a scrape waits for it.
const queueStatsTimeout = 3 * time.Second

// RegisterQueue exports the queue gauges, jobsd_jobs{status,type},
// jobsd_oldest_pending_age_seconds and jobsd_workers, from stats (in production
// (*store.Store).QueueStats), read at most once per QueueStatsTTL. Every
// status and known type is exported, zero when empty, so a dashboard's
// lines do not come and go. When the reading fails the gauges are left out
// of the scrape (stale numbers would look healthy) and
// jobsd_queue_stats_errors_total counts the failure.
func RegisterQueue(reg prometheus.Registerer, stats func(context.Context) (store.QueueStats, error), log *slog.Logger) {
	registerQueue(reg, stats, log, func() time.Duration { return QueueStatsTTL })
}

// registerQueue is RegisterQueue with the TTL as a function, so that a test
// can decide when the cache expires instead of waiting for it.
func registerQueue(reg prometheus.Registerer, stats func(context.Context) (store.QueueStats, error), log *slog.Logger, ttl func() time.Duration) {
	if log == nil {
		log = slog.Default()
	}
	q := &queueCollector{
		stats: stats,
		ttl:   ttl,
		log:   log,
		jobs: prometheus.NewDesc("jobsd_jobs",
			"Unfinished jobs by status (PENDING, PROCESSING) and type; exact up to 100,000 jobs, lower bounds beyond (see jobsd_queue_stats_capped).",
			[]string{"status", "type"}, nil),
		oldest: prometheus.NewDesc("jobsd_oldest_pending_age_seconds",
			"Age of the oldest PENDING job, by the database's clock; 0 when nothing is PENDING.", nil, nil),
		capped: prometheus.NewDesc("jobsd_queue_stats_capped",
			"1 when the queue is larger than the counting query reads, so that jobsd_jobs are lower bounds.", nil, nil),
		workers: prometheus.NewDesc("jobsd_workers",
			"Worker processes whose registry heartbeat is less than a minute old.", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobsd_queue_stats_errors_total",
			Help: "Readings of the queue's statistics that failed.",
		}),
	}
	reg.MustRegister(q, q.errors)
}

type queueCollector struct {
	stats                func(context.Context) (store.QueueStats, error)
	ttl                  func() time.Duration
	log                  *slog.Logger
	jobs, oldest, capped *prometheus.Desc
	workers              *prometheus.Desc
	errors               prometheus.Counter

	mu   sync.Mutex // held while reading, so concurrent scrapes share one query
	at   time.Time
	last store.QueueStats
	err  error
}

// Describe implements prometheus.Collector.
func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.jobs
	ch <- q.oldest
	ch <- q.capped
	ch <- q.workers
}

// Collect implements prometheus.Collector, from the cached reading.
func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := q.read()
	if err != nil {
		return
	}
	for _, status := range []store.Status{store.StatusPending, store.StatusProcessing} {
		counts := st.Counts[status]
		seen := map[string]bool{}
		for _, t := range JobTypes {
			seen[t] = true
			ch <- prometheus.MustNewConstMetric(q.jobs, prometheus.GaugeValue, float64(counts[store.Type(t)]), string(status), t)
		}
		var other int64 // types the database holds that this binary does not know
		for t, n := range counts {
			if !seen[string(t)] {
				other += n
			}
		}
		if other > 0 {
			ch <- prometheus.MustNewConstMetric(q.jobs, prometheus.GaugeValue, float64(other), string(status), Other)
		}
	}
	ch <- prometheus.MustNewConstMetric(q.oldest, prometheus.GaugeValue, st.OldestPendingAge.Seconds())
	capped := 0.0
	if st.Capped {
		capped = 1
	}
	ch <- prometheus.MustNewConstMetric(q.capped, prometheus.GaugeValue, capped)
	ch <- prometheus.MustNewConstMetric(q.workers, prometheus.GaugeValue, float64(st.LiveWorkers))
}

// read returns the cached reading, refreshing it when older than
// QueueStatsTTL. A failure is cached too, so an outage costs one attempt
// per QueueStatsTTL, not one per scrape.
func (q *queueCollector) read() (store.QueueStats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.at.IsZero() && time.Since(q.at) < q.ttl() {
		return q.last, q.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueStatsTimeout)
	defer cancel()
	q.last, q.err = q.stats(ctx)
	q.at = time.Now()
	if q.err != nil {
		q.errors.Inc()
		q.log.Warn("metrics: read queue statistics", "err", q.err)
	}
	return q.last, q.err
}
