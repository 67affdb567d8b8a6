package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/store"
)

// Machine describes where the numbers were taken.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpuModel"`
	MemoryMiB int64  `json:"memoryMiB"`
	GoVersion string `json:"goVersion"`
	Postgres  string `json:"postgresVersion"`
	OS        string `json:"os"`
	// JobsdCommit is the commit jobsd was built from ("+dirty" when the
	// working tree had uncommitted changes outside bench/).
	JobsdCommit string `json:"jobsdCommit"`
}

func machineInfo() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				m.MemoryMiB = kb / 1024
			}
		}
		_ = f.Close() // read only: its Close loses nothing
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// env is the shared setup: one PostgreSQL server and the jobsd binary
// (internal/proctest's: JOBSD_BIN, or one built from .. and cached).
type env struct {
	pg      *pgserver.Server
	binary  string
	machine Machine
	pgConf  map[string]string
	// label names the server: "non-durable" (pgserver.StartBinaries:
	// fsync, synchronous_commit, full_page_writes off) or "durable".
	label string
	// admin is a small pool on the server's postgres database, and
	// postmaster the server's pid: the work meter's (work.go).
	admin      *pgxpool.Pool
	postmaster int
}

// pgSettingNames are the settings recorded for each server.
var pgSettingNames = []string{"fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers",
	"max_connections", "work_mem", "effective_cache_size", "max_wal_size", "checkpoint_timeout"}

func setupEnv(ctx context.Context) (*env, error) {
	e := &env{machine: machineInfo(), label: "non-durable"}
	if out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.machine.JobsdCommit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--", ".", ":!bench").Output(); err == nil && len(st) > 0 {
			e.machine.JobsdCommit += "+dirty"
		}
	}
	logf("building jobsd from .. (%s), or taking the cached build ...", e.machine.JobsdCommit)
	var err error
	if e.binary, err = proctest.Binary(); err != nil {
		return nil, err
	}
	logf("starting PostgreSQL (pgserver.StartBinaries) ...")
	if e.pg, err = pgserver.StartBinaries(ctx); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return e, e.attach(ctx)
}

// durableEnv is e's setup on a second cluster with PostgreSQL's default
// durability (pgserver.StartBinariesDurable), checked with SHOW.
func (e *env) durableEnv(ctx context.Context) (*env, error) {
	d := &env{binary: e.binary, machine: e.machine, label: "durable"}
	logf("starting a durable PostgreSQL (fsync, synchronous_commit, full_page_writes at their defaults) ...")
	var err error
	if d.pg, err = pgserver.StartBinariesDurable(ctx); err != nil {
		return nil, fmt.Errorf("start durable postgres: %w", err)
	}
	if err := d.attach(ctx); err != nil {
		return d, err
	}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if d.pgConf[name] != "on" {
			return d, fmt.Errorf("durable server: %s = %s, want on", name, d.pgConf[name])
		}
	}
	return d, nil
}

// attach opens e.admin and reads the server's version, settings and
// postmaster pid.
func (e *env) attach(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(e.pg.URL())
	if err != nil {
		return err
	}
	cfg.MaxConns = 2
	if e.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	if err := e.admin.QueryRow(ctx, "SELECT version()").Scan(&e.machine.Postgres); err != nil {
		return err
	}
	e.pgConf = map[string]string{}
	for _, name := range pgSettingNames {
		var v string
		if err := e.admin.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return err
		}
		e.pgConf[name] = v
	}
	e.postmaster, err = e.postmasterPID(ctx)
	return err
}

func (e *env) close() {
	if e.admin != nil {
		e.admin.Close()
	}
	if e.pg != nil {
		if err := e.pg.Close(); err != nil {
			logf("closing postgres (%s): %v", e.label, err)
		}
	}
}

// createJobsDB creates a database with jobsd's schema and returns its URL
// and a pool on it, which the caller closes.
func (e *env) createJobsDB(ctx context.Context, name string) (string, *pgxpool.Pool, error) {
	url, err := e.createDB(ctx, name, true)
	if err != nil {
		return "", nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return "", nil, err
	}
	return url, pool, nil
}

// createDB creates a database; with jobsSchema it also runs jobsd's migrations.
func (e *env) createDB(ctx context.Context, name string, jobsSchema bool) (string, error) {
	url, err := e.pg.CreateDatabase(ctx, name, "")
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	if jobsSchema {
		db, err := sql.Open("postgres", url)
		if err != nil {
			return "", err
		}
		defer db.Close()
		if err := store.MigrateUp(ctx, db); err != nil {
			return "", fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return url, nil
}

// proc is a running jobsd subprocess (internal/proctest keeps its output).
type proc struct{ *proctest.Process }

// stop sends SIGTERM, waits up to 15 s, then kills.
func (p *proc) stop() { _ = p.Stop(15 * time.Second) } // how it ended was reported by exited/logTail if it mattered

func (p *proc) exited() bool { return p.Exited() }

func (p *proc) logTail() string { return p.Tail(20) }

// options are the harness's options for a jobsd process of the benchmark:
// this process's environment without JOBS_*, OTEL_* and database settings
// (cleanEnv), plus env.
func (e *env) options(name string, env []string) proctest.Options {
	return proctest.Options{Name: name, Binary: e.binary, BaseEnv: cleanEnv(), Env: env}
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if kv == "JOBS_PPROF_ADDR="+os.Getenv("JOBS_PPROF_ADDR") || !strings.HasPrefix(kv, "JOBS_") && !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// startServe runs `jobsd serve` against dbURL on a free port and waits for
// its /readyz. extra adds environment entries (e.g. "JOBS_RATE_READ=0").
func (e *env) startServe(ctx context.Context, name, dbURL, issuerURL string, dbMaxConns int, extra ...string) (*proc, string, error) {
	p, err := proctest.StartServe(ctx, e.options(name, append([]string{
		"DATABASE_URL=" + dbURL, "JOBS_AUTH_ISSUER=" + issuerURL,
		"JOBS_AUTH_CLIENT_IDS=bench", "JOBS_LOG_LEVEL=warn",
		"JOBS_DB_MAX_CONNS=" + strconv.Itoa(dbMaxConns)}, extra...)))
	if err != nil {
		return nil, "", fmt.Errorf("jobsd serve: %w", err)
	}
	return &proc{p}, "http://" + p.Addr, nil
}

// startDeliver runs `jobsd deliver` (webhook delivery alone) against dbURL
// and waits for its /readyz; extra adds environment entries.
func (e *env) startDeliver(ctx context.Context, name, dbURL string, extra ...string) (*proc, error) {
	p, err := proctest.StartDeliver(ctx, e.options(name, append([]string{"DATABASE_URL=" + dbURL, "JOBS_LOG_LEVEL=warn"}, extra...)))
	if err != nil {
		return nil, fmt.Errorf("jobsd deliver: %w", err)
	}
	return &proc{p}, nil
}

// startWorker runs `jobsd worker` against dbURL with the local provider and
// waits for its /readyz; extra adds environment entries.
func (e *env) startWorker(name, dbURL string, concurrency int, extra ...string) (*proc, error) {
	p, err := e.launchWorker(name, dbURL, concurrency, extra...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(context.Background(), 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("jobsd worker: %w", err)
	}
	return p, nil
}

// launchWorker starts a worker as startWorker does without waiting for it,
// so that several come up together; WaitReady waits for one.
func (e *env) launchWorker(name, dbURL string, concurrency int, extra ...string) (*proc, error) {
	p, err := proctest.LaunchWorker(e.options(name, append([]string{
		"DATABASE_URL=" + dbURL, "JOBS_MODEL_PROVIDER=local",
		"JOBS_WORKER_CONCURRENCY=" + strconv.Itoa(concurrency), "JOBS_LOG_LEVEL=warn"}, extra...)))
	if err != nil {
		return nil, fmt.Errorf("jobsd worker: %w", err)
	}
	return &proc{p}, nil
}

var errTimeout = errors.New("timed out")

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
