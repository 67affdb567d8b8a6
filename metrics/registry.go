package metrics

import (
	"database/sql"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jobsd/jobsd/store"
)

// NewRegistry returns a process's registry with the Go runtime and process
// (CPU, memory, file descriptors) collectors on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// DBName is the db_name label of the connection pool's go_sql_* series.
const DBName = "jobsd"

// StatusReadsDBName is the db_name label of the status reads' own pool on
// the primary (store.Store.StatusReadsDB): JOBS_DB_READ_BATCHES connections
// at most, beside JOBS_DB_MAX_CONNS.
const StatusReadsDBName = "jobsd_status_reads"

// RegisterDB exports db's pool statistics (sql.DBStats) as the standard
// go_sql_* series: connections open, in use and idle, the pool's limit, and
// how often and how long callers waited for a connection. A pool that is
// always at its limit with waits rising is what a slow database or too small
// a JOBS_DB_MAX_CONNS looks like from the process.
func RegisterDB(reg prometheus.Registerer, db *sql.DB) {
	reg.MustRegister(collectors.NewDBStatsCollector(db, DBName))
}

// registerStatusReadsDB exports the status reads' pool as RegisterDB does
// the store's, under db_name StatusReadsDBName.
func registerStatusReadsDB(reg prometheus.Registerer, db *sql.DB) {
	reg.MustRegister(collectors.NewDBStatsCollector(db, StatusReadsDBName))
}

// RegisterListener exports jobsd_listener_up{channel}: 1 while the LISTEN
// connection on channel is connected, else 0. While it is down, long polls
// and event streams only hear of changes by their fallbacks (the hub wakes
// every waiter when it reconnects), and a worker picks up new jobs only by
// its fallback poll.
func RegisterListener(reg prometheus.Registerer, channel string, up func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "jobsd_listener_up",
		Help:        "Whether the LISTEN connection for the channel is connected (1) or not (0).",
		ConstLabels: prometheus.Labels{"channel": channel},
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// RegisterStore exports what a process learns from its store: the pool's
// statistics (RegisterDB, and its status reads' pool), the queue gauges (RegisterQueue) and its read
// replicas (RegisterReplicas). The API and
// the worker both call it; queue gauges from several processes describe the
// same table, so dashboards take their max, not their sum.
func RegisterStore(reg prometheus.Registerer, st *store.Store, log *slog.Logger) {
	RegisterDB(reg, st.DB().DB)
	registerStatusReadsDB(reg, st.StatusReadsDB())
	RegisterQueue(reg, st.QueueStats, log)
	RegisterReplicas(reg, st)
}
