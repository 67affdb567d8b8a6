package pgserver

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FindBinaries returns the folder holding the initdb and postgres executables:
// the folder of initdb on PATH (symlinks resolved), else the newest
// /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if isExec(filepath.Join(filepath.Dir(real), "postgres")) {
				return filepath.Dir(real), nil
			}
		}
		if isExec(filepath.Join(filepath.Dir(p), "postgres")) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and postgres not found on PATH nor under /usr/lib/postgresql/*/bin")
}

func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// StartBinaries creates a temporary cluster with initdb and runs postgres on a
// free 127.0.0.1 port. As root, both run as the "postgres" system user. The
// main database is "postgres", user "postgres", trust authentication. Close
// stops the server and removes the folder.
//
// The postgres process gets Pdeathsig=SIGKILL, so it dies if this process
// dies; its temporary folder is then left behind under os.TempDir()
// (pgserver-*).
//
// It runs with fsync, synchronous_commit and full_page_writes off: tests
// and benchmarks that compare contenders on one server need no
// durability. StartBinariesDurable keeps PostgreSQL's defaults (on).
func StartBinaries(ctx context.Context) (*Server, error) { return startBinaries(ctx, nil, false) }

// StartBinariesDurable is StartBinaries with PostgreSQL's own defaults for
// fsync, synchronous_commit and full_page_writes, as users run it: the
// benchmark's headline server.
func StartBinariesDurable(ctx context.Context) (*Server, error) { return startBinaries(ctx, nil, true) }

type cluster struct {
	dir     string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
}

func startBinaries(ctx context.Context, logf func(string, ...any), durable bool) (srv *Server, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}

	dir, err := serverDir("pgserver-", cred)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	data := filepath.Join(dir, "data")
	logf("pgserver: initdb in %s (binaries from %s)", dir, bin)

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = serverEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, tail(out, 2000))
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, port, err := runPostgres(ctx, bin, dir, cred, durable)
		if err != nil {
			return nil, err
		}
		u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		if err = c.waitReady(ctx, u, 30*time.Second); err == nil {
			return &Server{source: SourceBinaries, url: u, closeFn: c.close}, nil
		}
		_ = c.stop()
		lastErr = err
		logb, _ := os.ReadFile(c.logPath)
		if !bytes.Contains(logb, []byte("could not bind")) && !bytes.Contains(logb, []byte("already in use")) {
			break // not a port conflict: do not retry
		}
		logf("pgserver: port %d taken, retrying", port)
	}
	return nil, lastErr
}

// serverEnv is the environment without PG* variables that could redirect the
// server or initdb.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runPostgres(ctx context.Context, bin, dir string, cred *syscall.Credential, durable bool) (*cluster, int, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = logFile.Close() }() // the child writes through its own copy; this one wrote nothing
	args := []string{"-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"}
	if !durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	//nolint:noctx // the server outlives the starting ctx; stop ends it
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the starting OS thread exits; Go never ends an
	// unlocked thread, so start from a locked one and release it afterwards.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, 0, fmt.Errorf("start postgres: %w", err)
	}
	c := &cluster{dir: dir, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, port, nil
}

func (c *cluster) waitReady(ctx context.Context, u string, limit time.Duration) error {
	return waitAccepting(ctx, u, limit, "postgres", c.done, func() error { return c.waitErr }, c.logTail)
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	return tail(b, 2000)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// stop asks for a fast shutdown (SIGINT), waits up to 15s, then kills.
func (c *cluster) stop() error {
	return stopProcess(c.cmd, c.done, syscall.SIGINT, 15*time.Second, "postgres")
}

func (c *cluster) close() error {
	err := c.stop()
	if rerr := os.RemoveAll(c.dir); rerr != nil && err == nil {
		err = fmt.Errorf("pgserver: remove %s: %w", c.dir, rerr)
	}
	return err
}

// serverDir makes a temporary folder for a server process (PostgreSQL, a
// standby, PgBouncer), readable by all and owned by cred's user when the
// server runs as another user (as root: the postgres user).
func serverDir(prefix string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	err = os.Chmod(dir, 0o755)
	if err == nil && cred != nil {
		err = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// stopProcess sends sig to a server process that closes done when it has
// exited, waits up to limit, then kills it.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, sig os.Signal, limit time.Duration, name string) error {
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(limit):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("pgserver: %s did not stop within %s; killed", name, limit)
}

// serverCredential is the "postgres" system user's when running as root
// (initdb, postgres and pgbouncer refuse root), else nil: the current user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and postgres and pgbouncer refuse root, but no %q user to run them as: %w", "postgres", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// waitAccepting waits until the server at u answers a ping, up to limit;
// it gives up early, with the log's tail, if the process (done, waitErr)
// exits or ctx ends.
func waitAccepting(ctx context.Context, u string, limit time.Duration, name string, done <-chan struct{},
	waitErr func() error, logTail func() string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up (%w); log tail:\n%s", name, waitErr(), logTail())
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; log tail:\n%s", name, ctx.Err(), logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s (%w); log tail:\n%s", name, limit, err, logTail())
		}
	}
}
