package faults

import (
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// proc is a jobsd process of a fault test (serve or worker): the harness's
// process, plus counts of the log messages tests report.
type proc struct {
	*proctest.Process

	mu     sync.Mutex
	counts map[string]int
}

// countedMessages are log messages whose occurrences tests report.
var countedMessages = []string{
	"request failed", "panic", "write outcome failed", "outcome dropped",
	"rescued jobs of lost workers", "claim failed", "heartbeat failed", "rescue failed",
	"listener", "notification listener lost its connection", "notification listener reconnected", "not ready",
	"token rejected",
}

// startProc starts a jobsd command through the harness (start: proctest.Serve
// or proctest.Worker), which waits for its /readyz and stops it when t ends.
// JOBS_FAULTS_LOGS=1 with -v echoes every log line.
func startProc(t testing.TB, start func(testing.TB, proctest.Options) *proctest.Process, mayExit bool, env []string) *proc {
	t.Helper()
	p := &proc{counts: map[string]int{}}
	o := proctest.Options{Binary: binary, Env: env, MayExit: mayExit, Observe: p.observe}
	if testing.Verbose() && os.Getenv("JOBS_FAULTS_LOGS") != "" {
		o.Echo = os.Stderr
	}
	p.Process = start(t, o)
	return p
}

// observe counts a log line's message if it is one of countedMessages.
func (p *proc) observe(line string) {
	var rec struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil {
		return // a line that is not JSON has no message to count
	}
	if slices.Contains(countedMessages, rec.Msg) {
		p.mu.Lock()
		p.counts[rec.Msg]++
		p.mu.Unlock()
	}
}

// count returns how often the log said msg.
func (p *proc) count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[msg]
}

// databaseEnv is a process's database settings: DATABASE_URL=dbURL, or,
// when JOBS_TEST_POOLER=pgbouncer runs the suite behind a pooler, its pool
// through a PgBouncer of its own in front of dbURL (the database, or a
// proxy the test cuts) and dbURL as its direct connection (pooledEnv).
func databaseEnv(t testing.TB, dbURL string) []string {
	t.Helper()
	if !pgtest.Pooler() {
		return []string{"DATABASE_URL=" + dbURL}
	}
	return pooledEnv(pgtest.PgBouncer(t, dbURL), dbURL, dbURL)
}

// pooledEnv points a process's pool at the database of dbURL through the
// PgBouncer b, in transaction mode, and what needs a session (LISTEN) at
// direct.
func pooledEnv(b *pgserver.PgBouncer, dbURL, direct string) []string {
	return []string{"DATABASE_URL=" + b.URL(dbURL), "JOBS_DB_POOLER=transaction", "JOBS_DIRECT_DATABASE_URL=" + direct}
}

// startServe runs `jobsd serve` on a free loopback port (proc.Addr).
func startServe(t testing.TB, dbURL string, iss *issuer, extraEnv ...string) *proc {
	t.Helper()
	env := append(databaseEnv(t, dbURL),
		"JOBS_AUTH_ISSUER="+iss.url,
		"JOBS_AUTH_CLIENT_IDS="+clientID,
		"JOBS_LOG_LEVEL=info",
		// The per-user rate limits would answer most of this load 429; the
		// soak turns them back on. One user holds hundreds of waiters in
		// the replica test: no cap on them either.
		"JOBS_RATE_READ=0",
		"JOBS_RATE_CREATE=0",
		"JOBS_USER_WAITERS=0",
	)
	env = append(env, extraEnv...)
	return startProc(t, proctest.Serve, false, env)
}

// workerEnv are second-scale worker settings: a dead worker's jobs come back
// after about 2 s.
var workerEnv = []string{
	"JOBS_MODEL_PROVIDER=local",
	"JOBS_WORKER_LEASE=2s",
	"JOBS_WORKER_HEARTBEAT=300ms",
	"JOBS_WORKER_RESCUE_EVERY=300ms",
	"JOBS_WORKER_POLL=500ms",
	"JOBS_WORKER_BACKOFF_BASE=100ms",
	"JOBS_WORKER_BACKOFF_MAX=500ms",
	"JOBS_WORKER_SHUTDOWN_WAIT=1s",
	"JOBS_LOG_LEVEL=info",
}

// startWorker runs `jobsd worker` with workerEnv.
func startWorker(t testing.TB, dbURL string, extraEnv ...string) *proc {
	t.Helper()
	env := append(append(databaseEnv(t, dbURL), workerEnv...), extraEnv...)
	return startProc(t, proctest.Worker, false, env)
}

// startCrashingWorker is startWorker for a worker that may die on its first
// job, before the harness sees it ready; the caller watches proc.Done.
func startCrashingWorker(t testing.TB, dbURL string, extraEnv ...string) *proc {
	t.Helper()
	env := append(append(databaseEnv(t, dbURL), workerEnv...), extraEnv...)
	return startProc(t, proctest.Worker, true, env)
}
