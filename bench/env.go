package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobsd/jobsd/internal/pgserver"
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
		f.Close()
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

// env is the shared setup: one PostgreSQL server, the jobsd binary and a
// scratch folder for process logs.
type env struct {
	pg      *pgserver.Server
	binary  string
	tmp     string
	machine Machine
	pgConf  map[string]string
}

func setupEnv(ctx context.Context) (*env, error) {
	tmp, err := os.MkdirTemp("", "jobsd-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{tmp: tmp, machine: machineInfo()}
	if out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.machine.JobsdCommit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--", ".", ":!bench").Output(); err == nil && len(st) > 0 {
			e.machine.JobsdCommit += "+dirty"
		}
	}
	logf("building jobsd from .. (%s) ...", e.machine.JobsdCommit)
	e.binary = filepath.Join(tmp, "jobsd")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.binary, "./cmd/jobsd")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/jobsd: %w\n%s", err, out)
	}
	logf("starting PostgreSQL (pgserver.StartBinaries) ...")
	if e.pg, err = pgserver.StartBinaries(ctx); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	pool, err := pgxpool.New(ctx, e.pg.URL())
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&e.machine.Postgres); err != nil {
		return nil, err
	}
	e.pgConf = map[string]string{}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
		"max_connections", "work_mem", "effective_cache_size", "max_wal_size"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, err
		}
		e.pgConf[name] = v
	}
	return e, nil
}

func (e *env) close() {
	if e.pg != nil {
		if err := e.pg.Close(); err != nil {
			logf("closing postgres: %v", err)
		}
	}
	_ = os.RemoveAll(e.tmp)
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

// proc is a running jobsd subprocess.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func (e *env) startJobsd(name string, args []string, envv ...string) (*proc, error) {
	logPath := filepath.Join(e.tmp, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(e.binary, args...)
	cmd.Env = append(cleanEnv(), envv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the starting thread
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("start jobsd %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// stop sends SIGTERM, waits up to 15 s, then kills; it returns the log tail
// when the process had exited on its own with an error.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startServe runs `jobsd serve` against dbURL and waits for /readyz.
// extra adds environment entries (e.g. "JOBS_RATE_READ=0").
func (e *env) startServe(ctx context.Context, name, dbURL, issuerURL string, dbMaxConns int, extra ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := e.startJobsd(name, []string{"serve"}, append([]string{
		"DATABASE_URL=" + dbURL, "JOBS_ADDR=" + addr, "JOBS_AUTH_ISSUER=" + issuerURL,
		"JOBS_AUTH_CLIENT_IDS=bench", "JOBS_LOG_LEVEL=warn",
		"JOBS_DB_MAX_CONNS=" + strconv.Itoa(dbMaxConns)}, extra...)...)
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, base, nil
			}
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, "", fmt.Errorf("jobsd serve not ready: %v\n%s", err, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startWorker runs `jobsd worker` against dbURL with the local provider;
// extra adds environment entries.
func (e *env) startWorker(name, dbURL string, concurrency int, extra ...string) (*proc, error) {
	return e.startJobsd(name, []string{"worker"}, append([]string{
		"DATABASE_URL=" + dbURL, "JOBS_MODEL_PROVIDER=local",
		"JOBS_WORKER_CONCURRENCY=" + strconv.Itoa(concurrency), "JOBS_LOG_LEVEL=warn"}, extra...)...)
}

var errTimeout = errors.New("timed out")

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
