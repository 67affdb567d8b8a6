package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Work is what one burn-down cost, per job completed, measured the same way
// for every contender from just before its worker starts until it has
// stopped:
//
//   - PostgreSQL CPU: utime+stime of the postmaster and of every process
//     whose parent it is (backends, autovacuum, checkpointer, WAL writer,
//     ...), plus the postmaster's cutime+cstime, where the time of children
//     that exited (and were reaped) meanwhile goes;
//   - the worker's CPU: utime+stime of the jobsd worker processes, read just
//     before they are stopped; for a worker inside the bench process (River,
//     the SQL ceiling's loops), this process's own CPU (getrusage) over the
//     same span, load generator polling included;
//   - WAL: pg_wal_lsn_diff of pg_current_wal_lsn() after and before (the
//     whole server's, and nothing else runs on it meanwhile);
//   - commits: xact_commit of the contender's database in pg_stat_database
//     (the bench's own polling of it included: about 2 per second);
//   - to explain WAL and CPU, not to rank: full-page images written
//     (pg_stat_wal.wal_fpi, whole server), blocks the database read from
//     outside shared buffers (blks_read), checkpoints begun meanwhile, and
//     the autovacuums and autoanalyzes of the database's tables that ended
//     meanwhile (each vacuum of the jobs table reads all of it).
type Work struct {
	Jobs int64 `json:"jobs"` // completed, the divisor
	// Per job.
	PGCPUus     float64 `json:"pgCpuUsPerJob"`
	WorkerCPUus float64 `json:"workerCpuUsPerJob"`
	WALBytes    float64 `json:"walBytesPerJob"`
	Commits     float64 `json:"commitsPerJob"`
	// Totals.
	PGCPUSeconds     float64 `json:"pgCpuSeconds"`
	WorkerCPUSeconds float64 `json:"workerCpuSeconds"`
	WALTotal         int64   `json:"walBytes"`
	CommitsTotal     int64   `json:"commits"`
	WorkerInBench    bool    `json:"workerInBenchProcess,omitempty"`
	// Diagnostics, per job but Checkpoints.
	FPIs         float64 `json:"fullPageImagesPerJob"`
	BlocksRead   float64 `json:"blocksReadPerJob"`
	Checkpoints  int64   `json:"checkpoints"`
	Autovacuums  int64   `json:"autovacuums"`
	Autoanalyzes int64   `json:"autoanalyzes"`
	fpis, reads  int64
}

// CPUusPerJob is PostgreSQL's and the worker's CPU per job together.
func (w *Work) CPUusPerJob() float64 { return w.PGCPUus + w.WorkerCPUus }

func (w *Work) String() string {
	if w == nil {
		return "work n/a"
	}
	return fmt.Sprintf("CPU/job PG %.1f µs + worker %.1f µs, WAL %.0f B/job (%.3f FPI), %.3f commits/job, %.2f blocks read/job, %d checkpoints, %d autovacuums, %d autoanalyzes",
		w.PGCPUus, w.WorkerCPUus, w.WALBytes, w.FPIs, w.Commits, w.BlocksRead, w.Checkpoints, w.Autovacuums, w.Autoanalyzes)
}

// workMeter measures one burn-down's Work on e's server for database db:
//
//	m, err := e.startWork(ctx, db)   // before the worker starts
//	m.workerDone(pids...)            // when the burn-down is over, before the worker stops (no pids: in the bench process)
//	w, err := m.stop(ctx)            // after it stopped
//	w.perJob(completed)
type workMeter struct {
	e  *env
	db string

	pg0      float64 // PostgreSQL's CPU seconds
	self0    float64 // this process's CPU seconds
	lsn0     string
	commits0 int64
	diag0    walDiag

	worker   float64 // the worker's CPU seconds, set by workerDone
	inBench  bool
	measured bool
}

func (e *env) startWork(ctx context.Context, db string) (*workMeter, error) {
	m := &workMeter{e: e, db: db}
	var err error
	if m.commits0, err = e.commits(ctx, db); err != nil {
		return nil, err
	}
	if err := e.admin.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&m.lsn0); err != nil {
		return nil, err
	}
	if m.diag0, err = e.walDiag(ctx, db); err != nil {
		return nil, err
	}
	if m.pg0, err = serverCPU(e.postmaster); err != nil {
		return nil, err
	}
	m.self0 = selfCPU()
	return m, nil
}

// workerDone records the worker's CPU: that of the processes pids (their
// whole life: they started within the burn-down), or with none this
// process's since start.
func (m *workMeter) workerDone(pids ...int) error {
	m.measured = true
	if len(pids) == 0 {
		m.worker, m.inBench = selfCPU()-m.self0, true
		return nil
	}
	m.worker = 0
	for _, pid := range pids {
		st, err := procStat(pid)
		if err != nil {
			return fmt.Errorf("worker CPU: %w", err)
		}
		m.worker += ticks(st.utime + st.stime)
	}
	return nil
}

// stop ends the measurement; perJob then divides by the jobs completed.
// Call it once the worker has stopped, so that its backends have exited and
// reported their statistics.
func (m *workMeter) stop(ctx context.Context) (*Work, error) {
	if !m.measured {
		if err := m.workerDone(); err != nil {
			return nil, err
		}
	}
	pg1, err := serverCPU(m.e.postmaster)
	if err != nil {
		return nil, err
	}
	w := &Work{PGCPUSeconds: pg1 - m.pg0, WorkerCPUSeconds: m.worker, WorkerInBench: m.inBench}
	if err := m.e.admin.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint", m.lsn0).Scan(&w.WALTotal); err != nil {
		return nil, err
	}
	c, err := m.e.settledCommits(ctx, m.db)
	if err != nil {
		return nil, err
	}
	w.CommitsTotal = c - m.commits0
	d, err := m.e.walDiag(ctx, m.db)
	if err != nil {
		return nil, err
	}
	w.fpis, w.reads, w.Checkpoints = d.fpis-m.diag0.fpis, d.reads-m.diag0.reads, d.checkpoints-m.diag0.checkpoints
	w.Autovacuums, w.Autoanalyzes = d.autovacuums-m.diag0.autovacuums, d.autoanalyzes-m.diag0.autoanalyzes
	return w, nil
}

// walDiag is the server's full-page images and checkpoints so far, and db's
// blocks read, autovacuums and autoanalyzes.
type walDiag struct{ fpis, reads, checkpoints, autovacuums, autoanalyzes int64 }

func (e *env) walDiag(ctx context.Context, db string) (walDiag, error) {
	var d walDiag
	err := e.admin.QueryRow(ctx, `SELECT (SELECT wal_fpi FROM pg_stat_wal), (SELECT blks_read FROM pg_stat_database WHERE datname = $1),
		(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_stat_clear_snapshot()`, db).Scan(&d.fpis, &d.reads, &d.checkpoints)
	if err != nil {
		return d, err
	}
	// A table's vacuum counts are in its own database's statistics only.
	conn, err := pgx.Connect(ctx, e.pg.DatabaseURL(db))
	if err != nil {
		return d, fmt.Errorf("autovacuum counts: %w", err)
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT COALESCE(sum(autovacuum_count), 0)::bigint, COALESCE(sum(autoanalyze_count), 0)::bigint
		FROM pg_stat_user_tables, pg_stat_clear_snapshot()`).Scan(&d.autovacuums, &d.autoanalyzes)
	return d, err
}

// perJob sets the per-job figures for completed jobs.
func (w *Work) perJob(completed int64) {
	w.Jobs = completed
	if completed > 0 {
		n := float64(completed)
		w.PGCPUus, w.WorkerCPUus = w.PGCPUSeconds*1e6/n, w.WorkerCPUSeconds*1e6/n
		w.WALBytes, w.Commits = float64(w.WALTotal)/n, float64(w.CommitsTotal)/n
		w.FPIs, w.BlocksRead = float64(w.fpis)/n, float64(w.reads)/n
	}
}

// commits is db's xact_commit, read afresh.
func (e *env) commits(ctx context.Context, db string) (int64, error) {
	var n int64
	err := e.admin.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database, pg_stat_clear_snapshot() WHERE datname = $1`, db).Scan(&n)
	return n, err
}

// settledCommits is db's xact_commit once it has stopped moving. A backend
// reports its counts as it exits (the worker's have: it stopped), else at
// most once a second (PostgreSQL 15), so this asks every 100 ms, from
// 300 ms on, until two answers agree (at most 1.5 s).
func (e *env) settledCommits(ctx context.Context, db string) (int64, error) {
	began := time.Now()
	prev := int64(-1)
	for {
		time.Sleep(100 * time.Millisecond)
		n, err := e.commits(ctx, db)
		if err != nil {
			return 0, err
		}
		if n == prev && time.Since(began) >= 300*time.Millisecond || time.Since(began) >= 1500*time.Millisecond {
			return n, nil
		}
		prev = n
	}
}

// postmasterPID is the pid of the postmaster serving admin: the parent of
// this connection's backend.
func (e *env) postmasterPID(ctx context.Context) (int, error) {
	var backend int
	if err := e.admin.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, err
	}
	st, err := procStat(backend)
	if err != nil {
		return 0, fmt.Errorf("the server's backend is not a process here (%w): PostgreSQL must run on this machine", err)
	}
	pm, err := procStat(st.ppid)
	if err != nil {
		return 0, fmt.Errorf("postmaster of backend %d: %w", backend, err)
	}
	if pm.comm != "postgres" {
		return 0, fmt.Errorf("postmaster of backend %d: pid %d is %q", backend, st.ppid, pm.comm)
	}
	return st.ppid, nil
}

// serverCPU is the CPU seconds of the postmaster pm, its reaped children
// and its live ones. The children are read first: one that exits between
// the two reads is counted twice (once live, once reaped), never lost.
func serverCPU(pm int) (float64, error) {
	var t int64
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == pm {
			continue
		}
		st, err := procStat(pid)
		if err != nil || st.ppid != pm {
			continue // gone meanwhile, or not the server's
		}
		t += st.utime + st.stime
	}
	st, err := procStat(pm)
	if err != nil {
		return 0, fmt.Errorf("postmaster: %w", err)
	}
	return ticks(t + st.utime + st.stime + st.cutime + st.cstime), nil
}

// selfCPU is this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type pstat struct {
	comm                         string
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
	nice                         int   // of the main thread
}

// procStat reads /proc/pid/stat (fields 2, 4, 14-17 and 19).
func procStat(pid int) (pstat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return pstat{}, err
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return pstat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3 (state)
	if len(f) < 17 {
		return pstat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	st := pstat{comm: s[open+1 : end]}
	st.ppid, _ = strconv.Atoi(f[1])
	for i, p := range []*int64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		*p, _ = strconv.ParseInt(f[11+i], 10, 64)
	}
	st.nice, _ = strconv.Atoi(f[16])
	return st, nil
}

// clkTck is USER_HZ, the unit of /proc/*/stat's times: 100 on Linux
// (getconf CLK_TCK).
const clkTck = 100

func ticks(t int64) float64 { return float64(t) / clkTck }
