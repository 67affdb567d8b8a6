package pgserver

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PgBouncerHint tells a user how to get the pgbouncer executable.
const PgBouncerHint = "install PgBouncer so that pgbouncer is on PATH (Debian: apt-get install pgbouncer; .ci/run does)"

// FindPgBouncer returns the path of the pgbouncer executable: on PATH, else
// Debian's /usr/sbin/pgbouncer (sbin is not on every user's PATH).
func FindPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if p := "/usr/sbin/pgbouncer"; isExec(p) {
		return p, nil
	}
	return "", errors.New("pgbouncer not found on PATH nor at /usr/sbin/pgbouncer; " + PgBouncerHint)
}

// PgBouncerOptions configure StartPgBouncer.
type PgBouncerOptions struct {
	// PoolSize is the number of server connections per database and user
	// (default_pool_size); 0 means 8. Fewer server connections than
	// clients is the point: each transaction of a client may run on
	// another server connection.
	PoolSize int
	// Log, if non-nil, receives progress messages.
	Log func(format string, args ...any)
}

// PgBouncer is a running pgbouncer in transaction pooling mode in front of
// one PostgreSQL server, for tests of jobsd behind a pooler.
type PgBouncer struct {
	addr    string // 127.0.0.1:port
	dir     string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartPgBouncer starts pgbouncer on a free 127.0.0.1 port, in its own
// temporary folder, in transaction pooling mode, in front of the server of
// serverURL (a postgres:// URL): every database of that server is reachable
// through it under its own name, as the user of serverURL. Clients
// authenticate as they would to the server: with the URL's password
// (SCRAM) when it has one, else without one (trust, as the binaries'
// cluster does). As root it runs as the "postgres" system user (pgbouncer
// refuses root). Close stops it and removes its folder; it is killed if
// this process dies.
func StartPgBouncer(ctx context.Context, serverURL string, opts PgBouncerOptions) (b *PgBouncer, err error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	exe, err := FindPgBouncer()
	if err != nil {
		return nil, err
	}
	server, err := url.Parse(serverURL)
	if err != nil || (server.Scheme != "postgres" && server.Scheme != "postgresql") || server.User == nil {
		return nil, fmt.Errorf("pgbouncer: want a postgres://user@host:port/db URL of the server, got %q", redact(serverURL))
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := serverDir("pgbouncer-", cred)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		b, err := runPgBouncer(exe, dir, server, opts.PoolSize, cred)
		if err != nil {
			return nil, err
		}
		if err = b.waitReady(ctx, b.URL(serverURL), 15*time.Second); err == nil {
			logf("pgserver: pgbouncer (transaction pooling) on %s in front of %s", b.addr, server.Host)
			return b, nil
		}
		_ = b.stop()
		lastErr = err
		if !strings.Contains(b.logTail(), "in use") {
			break // not a port conflict: do not retry
		}
		logf("pgserver: pgbouncer port taken, retrying")
	}
	return nil, lastErr
}

// runPgBouncer writes the configuration for a free port and starts
// pgbouncer in the foreground.
func runPgBouncer(exe, dir string, server *url.URL, poolSize int, cred *syscall.Credential) (*PgBouncer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if poolSize <= 0 {
		poolSize = 8
	}
	password, hasPassword := server.User.Password()
	authType := "trust"
	if hasPassword {
		authType = "scram-sha-256" // from the plain password in the auth file
	}
	userlist := fmt.Sprintf("%s %s\n", quoteIni(server.User.Username()), quoteIni(password))
	host, serverPort := server.Hostname(), server.Port()
	if serverPort == "" {
		serverPort = "5432"
	}
	logPath := filepath.Join(dir, "pgbouncer.log")
	// "*" passes every database name through to the same-named database
	// of the server, logging in with the password of the auth file.
	//
	// The two timeouts are what a deployment should set too (see
	// docs/deploying.md): with PgBouncer's defaults, a 3 s cut of the
	// link to PostgreSQL held queries for 15 s and kept the API unready
	// for 12 s after the link came back. server_login_retry (15 s) is how
	// long PgBouncer waits after a failed server connection before it
	// tries another, while queries queue; query_wait_timeout (120 s)
	// bounds that queue, and lib/pq's cancel request, sent when jobsd's
	// 5 s statement timeout passes, does not reach a query PgBouncer
	// holds before any server has it.
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = %s
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 2000
logfile = %s
pidfile =
server_login_retry = 1
query_wait_timeout = 5
log_connections = 0
log_disconnections = 0
stats_users = %s
`, host, serverPort, port, authType, filepath.Join(dir, "userlist.txt"), poolSize, logPath, server.User.Username())
	for name, content := range map[string]string{"userlist.txt": userlist, "pgbouncer.ini": ini} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	//nolint:noctx // pgbouncer outlives the starting ctx; stop ends it
	cmd := exec.Command(exe, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the starting OS thread exits (see runPostgres).
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	b := &PgBouncer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		b.waitErr = cmd.Wait()
		if out.Len() > 0 {
			// Start-up errors before the log file opens go to stderr.
			_ = os.WriteFile(filepath.Join(dir, "stderr.log"), out.Bytes(), 0o644)
		}
		close(b.done)
	}()
	return b, nil
}

// quoteIni double-quotes s for pgbouncer's auth file.
func quoteIni(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// redact drops the password of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func (b *PgBouncer) waitReady(ctx context.Context, u string, limit time.Duration) error {
	return waitAccepting(ctx, u, limit, "pgbouncer", b.done, func() error { return b.waitErr }, b.logTail)
}

// URL returns dbURL, a URL of a database on the server, with the host and
// port of the pooler instead: the same database, user and password, through
// pgbouncer.
func (b *PgBouncer) URL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.Host = b.addr
	return u.String()
}

// Transactions returns how many transactions pgbouncer has passed to the
// server for database so far (total_xact_count of its SHOW STATS, which it
// updates every few seconds: stats_period): a test's proof that a pool
// went through it. adminURL is a URL of the server, for the user and
// password.
func (b *PgBouncer) Transactions(ctx context.Context, adminURL, database string) (int64, error) {
	db, err := sql.Open("postgres", withDatabase(b.URL(adminURL), "pgbouncer"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SHOW STATS") // the admin console takes simple queries only
	if err != nil {
		return 0, fmt.Errorf("pgbouncer SHOW STATS: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	vals := make([]sql.NullString, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return 0, err
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		if row["database"] == database {
			return strconv.ParseInt(row["total_xact_count"], 10, 64)
		}
	}
	return 0, rows.Err()
}

// Addr is the pooler's host:port.
func (b *PgBouncer) Addr() string { return b.addr }

func (b *PgBouncer) logTail() string {
	var all []byte
	for _, name := range []string{"stderr.log", "pgbouncer.log"} {
		if data, err := os.ReadFile(filepath.Join(b.dir, name)); err == nil {
			all = append(all, data...)
		}
	}
	return tail(all, 2000)
}

// stop asks for an immediate shutdown (SIGTERM: clients are disconnected),
// waits up to 10 s, then kills.
func (b *PgBouncer) stop() error {
	return stopProcess(b.cmd, b.done, syscall.SIGTERM, 10*time.Second, "pgbouncer")
}

// Close stops pgbouncer and removes its folder.
func (b *PgBouncer) Close() error {
	err := b.stop()
	if rerr := os.RemoveAll(b.dir); rerr != nil && err == nil {
		err = fmt.Errorf("pgserver: remove %s: %w", b.dir, rerr)
	}
	return err
}
