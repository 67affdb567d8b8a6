package metrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/store"
)

// replicaCollector exports the store's read replicas (store.Replicas) at
// each scrape; a store without replicas exports only the primary's reads.
type replicaCollector struct {
	st                                    *store.Store
	inUse, up, lag, gets, lists, fallback *prometheus.Desc
	primaryGets                           *prometheus.Desc
}

// RegisterReplicas exports which read replicas are in use and how far
// behind the primary each is:
//
//   - jobsd_read_replica_in_use{replica}: 1 while reads go to it (up, and
//     within JOBS_READ_MAX_LAG), else 0;
//   - jobsd_read_replica_up{replica}: 1 while it answers as a standby;
//   - jobsd_read_replica_lag_seconds{replica}: how far behind the primary it
//     is (0: it had replayed all the primary had written at the last check;
//     else the age of the newest moment it has every change of; NaN before
//     the first measurement);
//   - jobsd_read_replica_status_reads_total{replica} and
//     jobsd_primary_status_reads_total: the statements status reads sent
//     to each (a statement answers one or more polls);
//   - jobsd_read_replica_list_pages_total{replica}: list pages it served;
//   - jobsd_read_fallbacks_total{reason}: reads that went to the primary
//     instead, by reason (no_replica, changed, not_found, older, error).
func RegisterReplicas(reg prometheus.Registerer, st *store.Store) {
	replica := []string{"replica"}
	reg.MustRegister(&replicaCollector{
		st:    st,
		inUse: prometheus.NewDesc("jobsd_read_replica_in_use", "Whether reads go to the read replica (1): it is up and within JOBS_READ_MAX_LAG.", replica, nil),
		up:    prometheus.NewDesc("jobsd_read_replica_up", "Whether the read replica answered its last check as a standby (1) or not (0).", replica, nil),
		lag: prometheus.NewDesc("jobsd_read_replica_lag_seconds",
			"How far behind the primary the read replica is: 0 when it had replayed all the primary had written at the last check, else the age of the newest moment it has every change of.", replica, nil),
		gets: prometheus.NewDesc("jobsd_read_replica_status_reads_total",
			"Statements that status reads sent to the read replica (one statement answers one or more polls).", replica, nil),
		lists: prometheus.NewDesc("jobsd_read_replica_list_pages_total", "List pages the read replica served.", replica, nil),
		fallback: prometheus.NewDesc("jobsd_read_fallbacks_total",
			"Reads that went to the primary instead of a read replica, by reason: no_replica (none in use), changed (since the replica was fresh), not_found, older (than the client has seen), error.",
			[]string{"reason"}, nil),
		primaryGets: prometheus.NewDesc("jobsd_primary_status_reads_total",
			"Statements that status reads sent to the primary (one statement answers one or more polls).", nil, nil),
	})
}

// Describe sends the descriptors.
func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inUse, c.up, c.lag, c.gets, c.lists, c.fallback, c.primaryGets} {
		ch <- d
	}
}

// Collect reads the store's counters and states.
func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.primaryGets, prometheus.CounterValue, float64(c.st.Gets()))
	for _, r := range c.st.Replicas() {
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, boolValue(r.InUse), r.Name)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolValue(r.Up), r.Name)
		lag := r.Lag.Seconds()
		if r.Lag < 0 {
			lag = math.NaN() // not measured yet
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag, r.Name)
		ch <- prometheus.MustNewConstMetric(c.gets, prometheus.CounterValue, float64(r.Gets), r.Name)
		ch <- prometheus.MustNewConstMetric(c.lists, prometheus.CounterValue, float64(r.Lists), r.Name)
	}
	if fb := c.st.ReplicaFallbacks(); fb != nil {
		for _, reason := range store.FallbackReasons() {
			ch <- prometheus.MustNewConstMetric(c.fallback, prometheus.CounterValue, float64(fb[reason]), reason)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
