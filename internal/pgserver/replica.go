package pgserver

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// StandbyOptions configures [StartStandby].
type StandbyOptions struct {
	// ApplyDelay is the standby's recovery_min_apply_delay: it receives
	// the primary's WAL at once but replays each commit only this long
	// after the primary made it, a replica that lags by design.
	ApplyDelay time.Duration
}

// Standby is a streaming replica of a primary, made with pg_basebackup -R
// from the PostgreSQL binaries and run on a free 127.0.0.1 port (as the
// "postgres" system user when root, as for [StartBinaries]). Stop and Start
// take it away and bring it back on the same port with its data, as a
// replica that restarts; Close stops it and removes its folder.
type Standby struct {
	bin  string
	dir  string
	cred *syscall.Credential
	port int
	args []string

	mu sync.Mutex
	c  *cluster // nil while stopped
}

// StartStandby makes a standby of primary and starts it. The primary must
// accept a replication connection from 127.0.0.1 as its URL's user, as a
// cluster of [StartBinaries] does (initdb's pg_hba.conf trusts local
// replication); a container's usually does not, so replica tests start a
// binaries primary of their own.
func StartStandby(ctx context.Context, primary *Server, opts StandbyOptions) (_ *Standby, err error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	// A hot standby needs max_connections (and a few more) at least the
	// primary's.
	maxConns, err := primarySetting(ctx, primary.URL(), "max_connections")
	if err != nil {
		return nil, err
	}
	dir, err := serverDir("pgstandby-", cred)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	backup := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"),
		"-D", filepath.Join(dir, "data"), "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-d", replicationConnString(primary.URL()))
	backup.Dir = dir
	backup.Env = serverEnv()
	backup.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := backup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_basebackup: %w\n%s", err, tail(out, 2000))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Standby{bin: bin, dir: dir, cred: cred, port: port, args: []string{
		"-c", "max_connections=" + maxConns,
		"-c", "fsync=off",
		"-c", fmt.Sprintf("recovery_min_apply_delay=%dms", opts.ApplyDelay.Milliseconds()),
	}}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the standby's main database ("postgres", user "postgres").
func (s *Standby) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// DatabaseURL is the URL of database name on the standby.
func (s *Standby) DatabaseURL(name string) string { return withDatabase(s.URL(), name) }

// Start runs the standby (again) on its port and waits until it accepts
// connections.
func (s *Standby) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		return nil
	}
	c, err := startCluster(s.bin, s.dir, s.cred, s.port, s.args)
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, s.URL(), 30*time.Second); err != nil {
		_ = c.stop()
		return err
	}
	s.c = c
	return nil
}

// Stop shuts the standby down (fast: open connections are cut) and keeps
// its data for Start.
func (s *Standby) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return nil
	}
	err := s.c.stop()
	s.c = nil
	return err
}

// Close stops the standby and removes its folder.
func (s *Standby) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = fmt.Errorf("pgserver: remove %s: %w", s.dir, rerr)
	}
	return err
}

// WaitReplayed waits until the standby has replayed every transaction the
// primary at primaryURL had committed when it was called.
func (s *Standby) WaitReplayed(ctx context.Context, primaryURL string) error {
	p, err := sql.Open("postgres", primaryURL)
	if err != nil {
		return err
	}
	defer p.Close()
	// A transaction that writes (a WAL message) and commits with
	// synchronous_commit on flushes the WAL up to its commit, so the WAL
	// written then holds every earlier commit, also those of a primary that
	// runs with synchronous_commit off (as StartBinaries' does).
	conn, err := p.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	var target string
	if _, err := conn.ExecContext(ctx, `SET synchronous_commit = on; BEGIN; SELECT pg_logical_emit_message(true, 'pgserver', 'flush'); COMMIT`); err != nil {
		return fmt.Errorf("flush the primary's WAL: %w", err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		return fmt.Errorf("read the primary's WAL position: %w", err)
	}
	db, err := sql.Open("postgres", s.URL())
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		var done bool
		err := db.QueryRowContext(ctx, `SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, target).Scan(&done)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby replaying up to %s: %w (last error: %w)", target, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startCluster runs postgres on the cluster in dir (its data folder
// dir/data) on port, with args after the common ones.
func startCluster(bin, dir string, cred *syscall.Credential, port int, args []string) (*cluster, error) {
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }()
	all := append([]string{"-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1"}, args...)
	//nolint:noctx // the server outlives the starting ctx; stop ends it
	cmd := exec.Command(filepath.Join(bin, "postgres"), all...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := startLocked(cmd); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	c := &cluster{dir: dir, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// primarySetting reads one setting of the server at u.
func primarySetting(ctx context.Context, u, name string) (string, error) {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
		return "", fmt.Errorf("read the primary's %s: %w", name, err)
	}
	return v, nil
}

// replicationConnString is the primary's URL for pg_basebackup: its host,
// port, user and password, without lib/pq-only parameters.
func replicationConnString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := url.Values{}
	if v := u.Query().Get("sslmode"); v != "" {
		q.Set("sslmode", v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// startLocked starts cmd from a locked OS thread: Pdeathsig fires when the
// starting thread exits, and Go never ends an unlocked one.
func startLocked(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}
