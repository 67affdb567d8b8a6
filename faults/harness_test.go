package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/pgtest"
)

// binary is jobsd, built once for this test binary.
var binary string

// keyA and keyB are the issuer's signing keys (B for rotation and unknown kids).
var keyA, keyB *rsa.PrivateKey

const clientID = "faults-client"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobsd-faults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jobsd")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/jobsd/jobsd/cmd/jobsd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build jobsd: %v\n%s", err, out)
		os.Exit(1)
	}
	for _, k := range []**rsa.PrivateKey{&keyA, &keyB} {
		if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// A restartable listener: the database proxy and the JWKS server both need to
// go away (connections closed, new ones refused) and come back on the same
// address.

// proxy forwards 127.0.0.1:port to target until cut.
type proxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	cuts  int
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut while dialling
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes every forwarded connection and the listener: new connections
// are refused (ECONNREFUSED) until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	p.ln.Close()
	p.ln = nil
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
}

// restore listens again on the same address.
func (p *proxy) restore() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy restore: %v", err)
	}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
}

// viaProxy rewrites a postgres URL to go through the proxy.
func (p *proxy) url(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

func hostPort(t testing.TB, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("database URL %q: not a postgres:// URL with a host (%v)", dbURL, err)
	}
	return u.Host
}

// ---------------------------------------------------------------------------
// The token issuer and its JWKS endpoint.

type issuer struct {
	t     testing.TB
	url   string // the issuer URL, also where the JWKS is served
	addr  string
	iss   atomic.Pointer[auth.Issuer] // the key the endpoint publishes
	delay atomic.Int64                // nanoseconds each JWKS answer waits
	hits  atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	i := &issuer{t: t, addr: ln.Addr().String()}
	i.url = "http://" + i.addr
	i.iss.Store(auth.NewIssuer(keyA, i.url))
	i.start(ln)
	t.Cleanup(i.stop)
	return i
}

func (i *issuer) start(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc(auth.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		i.hits.Add(1)
		if d := time.Duration(i.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		i.iss.Load().JWKSHandler().ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux}
	i.mu.Lock()
	i.srv = srv
	i.mu.Unlock()
	go srv.Serve(ln)
}

// stop closes the JWKS endpoint: connections refused.
func (i *issuer) stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.srv != nil {
		i.srv.Close()
		i.srv = nil
	}
}

// resume serves the JWKS again on the same address.
func (i *issuer) resume() {
	i.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", i.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		i.t.Fatalf("jwks resume: %v", err)
	}
	i.start(ln)
}

// token mints an access token signed with key (keyA or keyB) for sub.
func (i *issuer) token(key *rsa.PrivateKey, sub string, admin bool) string {
	i.t.Helper()
	var groups []string
	if admin {
		groups = []string{"admin"}
	}
	tok, err := auth.NewIssuer(key, i.url).Mint(sub, clientID, groups, time.Hour)
	if err != nil {
		i.t.Fatal(err)
	}
	return tok
}

// ---------------------------------------------------------------------------
// jobsd processes.

type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	addr string // serve: the address it listens on

	ready  chan struct{}
	exited chan struct{}
	err    error // cmd.Wait's, after exited

	mu     sync.Mutex
	lines  []string // the last log lines
	counts map[string]int
}

// countedMessages are log messages whose occurrences tests report.
var countedMessages = []string{
	"request failed", "panic", "write outcome failed", "outcome dropped",
	"rescued jobs of lost workers", "claim failed", "heartbeat failed", "rescue failed",
	"listener", "job change listener lost its connection", "job change listener reconnected", "not ready",
	"token rejected",
}

func startProc(t testing.TB, name, readyMsg string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, ready: make(chan struct{}), exited: make(chan struct{}), counts: map[string]int{}}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		readied := false
		for sc.Scan() {
			line := sc.Text()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			json.Unmarshal([]byte(line), &rec)
			p.mu.Lock()
			if len(p.lines) >= 400 {
				p.lines = p.lines[200:]
			}
			p.lines = append(p.lines, line)
			for _, m := range countedMessages {
				if rec.Msg == m {
					p.counts[m]++
				}
			}
			if !readied && rec.Msg == readyMsg {
				readied = true
				p.addr = rec.Addr
				close(p.ready)
			}
			p.mu.Unlock()
			if testing.Verbose() && os.Getenv("JOBS_FAULTS_LOGS") != "" {
				fmt.Fprintf(os.Stderr, "[%s] %s\n", name, line)
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.mu.Lock()
			tail := p.lines[max(0, len(p.lines)-30):]
			t.Logf("%s: last log lines:\n%s", p.name, strings.Join(tail, "\n"))
			p.mu.Unlock()
		}
	})
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("%s exited before it was ready: %v\n%s", name, p.err, strings.Join(p.lines, "\n"))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30 s", name)
	}
	return p
}

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// count returns how often the log said msg.
func (p *proc) count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[msg]
}

func (p *proc) logTail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// startServe runs `jobsd serve` on a free loopback port.
func startServe(t testing.TB, dbURL string, iss *issuer, extraEnv ...string) *proc {
	t.Helper()
	env := append([]string{
		"DATABASE_URL=" + dbURL,
		"JOBS_ADDR=127.0.0.1:0",
		"JOBS_AUTH_ISSUER=" + iss.url,
		"JOBS_AUTH_CLIENT_IDS=" + clientID,
		"JOBS_LOG_LEVEL=info",
		// The per-user rate limits would answer most of this load 429; the
		// soak turns them back on. One user holds hundreds of waiters in
		// the replica test: no cap on them either.
		"JOBS_RATE_READ=0",
		"JOBS_RATE_CREATE=0",
		"JOBS_USER_WAITERS=0",
	}, extraEnv...)
	return startProc(t, "serve", "api ready", env, "serve")
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

func startWorker(t testing.TB, dbURL string, extraEnv ...string) *proc {
	t.Helper()
	env := append(append([]string{"DATABASE_URL=" + dbURL}, workerEnv...), extraEnv...)
	return startProc(t, "worker", "worker ready", env, "worker")
}

// ---------------------------------------------------------------------------
// HTTP.

type client struct {
	base  string
	token string
	hc    *http.Client
}

// clientTimeout is far above any bound the service promises (5 s statements):
// a request that reaches it has hung.
const clientTimeout = 20 * time.Second

func newClient(base, token string) *client {
	return &client{base: base, token: token, hc: &http.Client{
		Timeout:   clientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}}
}

type result struct {
	method, path string
	status       int
	body         []byte
	hdr          http.Header
	start        time.Time
	dur          time.Duration
	err          error
}

func (c *client) do(method, path string, body any, hdr ...string) result {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	r := result{method: method, path: path, start: time.Now()}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		r.err = err
		return r
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		r.err, r.dur = err, time.Since(r.start)
		return r
	}
	r.body, r.err = io.ReadAll(resp.Body)
	resp.Body.Close()
	r.status, r.hdr, r.dur = resp.StatusCode, resp.Header, time.Since(r.start)
	return r
}

// apiJob is the job as the API shows it.
type apiJob struct {
	ID          uuid.UUID `json:"id"`
	Status      string    `json:"status"`
	Error       *string   `json:"error"`
	Attempts    int       `json:"attempts"`
	CreatedAt   string    `json:"createdAt"`
	StartedAt   *string   `json:"startedAt"`
	CompletedAt *string   `json:"completedAt"`
	UpdatedAt   string    `json:"updatedAt"`
}

func (r result) job() (apiJob, bool) {
	var j apiJob
	if json.Unmarshal(r.body, &j) != nil || j.ID == uuid.Nil {
		return j, false
	}
	return j, true
}

func terminal(status string) bool { return status == "COMPLETED" || status == "FAILED" }

// problem says what is wrong with a response under fault: nothing for 2xx,
// 304 and 4xx with the error shape, and for the documented 503 (exact body,
// Retry-After); anything else (a 500, another 5xx, a body that is not the
// error shape, a transport error or a client timeout) is a problem.
func (r result) problem() string {
	if r.err != nil {
		return fmt.Sprintf("%s %s: transport error after %v: %v", r.method, r.path, r.dur.Round(time.Millisecond), r.err)
	}
	switch {
	case r.status == http.StatusNotModified:
		return ""
	case r.status == http.StatusServiceUnavailable:
		if strings.HasPrefix(r.path, "/readyz") {
			return "" // readyz has its own message
		}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(r.body, &e) != nil || e.Error != "Service temporarily unavailable" || r.hdr.Get("Retry-After") == "" {
			return fmt.Sprintf("%s %s: 503 without the documented shape: %q (Retry-After %q)", r.method, r.path, r.body, r.hdr.Get("Retry-After"))
		}
		return ""
	case r.status >= 500:
		return fmt.Sprintf("%s %s: %d %q", r.method, r.path, r.status, r.body)
	}
	if !json.Valid(r.body) {
		return fmt.Sprintf("%s %s: %d with a body that is not JSON: %q", r.method, r.path, r.status, r.body)
	}
	if r.status >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(r.body, &e) != nil || e.Error == "" {
			return fmt.Sprintf("%s %s: %d without the error shape: %q", r.method, r.path, r.status, r.body)
		}
	}
	return ""
}

// ---------------------------------------------------------------------------
// Recording responses.

type recorder struct {
	mu      sync.Mutex
	results []result
}

func (rc *recorder) add(r result) {
	rc.mu.Lock()
	rc.results = append(rc.results, r)
	rc.mu.Unlock()
}

func (rc *recorder) all() []result {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.results)
}

// problems lists (up to 10) and counts responses with a problem.
func problems(rs []result) (n int, first []string) {
	for _, r := range rs {
		if p := r.problem(); p != "" {
			n++
			if len(first) < 10 {
				first = append(first, p)
			}
		}
	}
	return n, first
}

// window selects the results that started in [from, to).
func window(rs []result, from, to time.Time, keep func(result) bool) []result {
	var out []result
	for _, r := range rs {
		if !r.start.Before(from) && r.start.Before(to) && (keep == nil || keep(r)) {
			out = append(out, r)
		}
	}
	return out
}

func isPoll(r result) bool {
	return r.method == http.MethodGet && strings.HasPrefix(r.path, "/api/jobs/") && !strings.Contains(r.path, "waitSeconds")
}

type stats struct {
	n                  int
	p50, p90, p99, max time.Duration
	byStatus           map[int]int
	errors             int
}

func summarize(rs []result) stats {
	s := stats{n: len(rs), byStatus: map[int]int{}}
	d := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		d = append(d, r.dur)
		if r.err != nil {
			s.errors++
		} else {
			s.byStatus[r.status]++
		}
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	s.p50, s.p90, s.p99 = pct(0.50), pct(0.90), pct(0.99)
	if len(d) > 0 {
		s.max = d[len(d)-1]
	}
	return s
}

func (s stats) String() string {
	r := func(d time.Duration) string {
		if d < 10*time.Millisecond {
			return d.Round(10 * time.Microsecond).String()
		}
		return d.Round(time.Millisecond).String()
	}
	codes := make([]int, 0, len(s.byStatus))
	for c := range s.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var st []string
	for _, c := range codes {
		st = append(st, fmt.Sprintf("%d×%d", s.byStatus[c], c))
	}
	if s.errors > 0 {
		st = append(st, fmt.Sprintf("%d×transport-error", s.errors))
	}
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s max=%s [%s]", s.n, r(s.p50), r(s.p90), r(s.p99), r(s.max), strings.Join(st, " "))
}

// ---------------------------------------------------------------------------
// The audit.

// openDirect opens a connection pool to the test database that bypasses
// every proxy.
func openDirect(t testing.TB, dbURL string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// installHistory records every change of every job row (a trigger the
// service knows nothing about), so that the audit can see transitions the
// final row no longer shows: a second completion, a write by a stale lease.
func installHistory(t testing.TB, db *sqlx.DB) {
	t.Helper()
	for _, stmt := range []string{
		`CREATE TABLE job_history (
			seq bigserial PRIMARY KEY, job_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
			old_status text, new_status text, old_lease uuid, new_lease uuid,
			old_attempts int, new_attempts int, new_updated_at timestamptz, new_run_after timestamptz, new_error text)`,
		`CREATE FUNCTION record_job_history() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO job_history (job_id, old_status, new_status, old_lease, new_lease, old_attempts, new_attempts, new_updated_at, new_run_after, new_error)
			VALUES (NEW.id, OLD.status, NEW.status, OLD.lease_owner, NEW.lease_owner, OLD.attempts, NEW.attempts, NEW.updated_at, NEW.run_after, NEW.error);
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER record_job_history AFTER UPDATE ON jobs FOR EACH ROW
			WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner)
			EXECUTE FUNCTION record_job_history()`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("install history: %v", err)
		}
	}
}

// waitAllTerminal waits until no job of the database is unfinished.
func waitAllTerminal(t testing.TB, db *sqlx.DB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left, err := unfinished(db)
		if err == nil && left == 0 {
			return
		}
		if time.Now().After(deadline) {
			var rows []struct {
				Status   string `db:"status"`
				Attempts int    `db:"attempts"`
				N        int    `db:"n"`
			}
			db.Select(&rows, `SELECT status, attempts, count(*) AS n FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED') GROUP BY 1, 2`)
			t.Fatalf("%d jobs still unfinished after %v (err %v): %+v", left, within, err, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unfinished counts the jobs not yet COMPLETED or FAILED.
func unfinished(db *sqlx.DB) (int, error) {
	var n int
	err := db.Get(&n, `SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED')`)
	return n, err
}

type auditReport struct {
	Jobs, Completed, Failed, Claims int
	Errors                          map[string]int
}

func (a auditReport) String() string {
	return fmt.Sprintf("%d jobs: %d COMPLETED, %d FAILED %v; %d claims (handler starts)", a.Jobs, a.Completed, a.Failed, a.Errors, a.Claims)
}

// audit checks every job: known ids all exist, each job is in exactly one
// terminal state reached exactly once and never left, attempts within
// max_attempts, timestamps in order, and every worker outcome written by
// the holder of the job's newest lease, every attempt counted by a claim
// that wrote PROCESSING with a lease.
func audit(t testing.TB, db *sqlx.DB, known []uuid.UUID) auditReport {
	t.Helper()
	ids := make([]string, len(known))
	for i, id := range known {
		ids[i] = id.String()
	}
	checks := []struct{ what, query string }{
		{"unfinished jobs", `SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED')`},
		{"created jobs missing from the table", `SELECT count(*) FROM unnest($1::uuid[]) AS k(id) LEFT JOIN jobs j ON j.id = k.id WHERE j.id IS NULL`},
		{"jobs with attempts > max_attempts", `SELECT count(*) FROM jobs WHERE attempts > max_attempts`},
		{"COMPLETED jobs without result, with error or never attempted", `SELECT count(*) FROM jobs WHERE status = 'COMPLETED' AND (result IS NULL OR error IS NOT NULL OR attempts < 1 OR started_at IS NULL)`},
		{"FAILED jobs without error", `SELECT count(*) FROM jobs WHERE status = 'FAILED' AND error IS NULL`},
		{"jobs with timestamps out of order", `SELECT count(*) FROM jobs WHERE NOT (
			created_at <= updated_at AND (started_at IS NULL OR (created_at <= started_at AND started_at <= updated_at))
			AND (completed_at IS NULL OR ((started_at IS NULL OR started_at <= completed_at) AND completed_at <= updated_at)))`},
		{"jobs never started that are not cancelled", `SELECT count(*) FROM jobs WHERE started_at IS NULL AND NOT (status = 'FAILED' AND error = 'Cancelled by user')`},
		{"jobs finished more than once", `SELECT count(*) FROM (SELECT job_id FROM job_history
			WHERE new_status IN ('COMPLETED', 'FAILED') AND old_status NOT IN ('COMPLETED', 'FAILED') GROUP BY job_id HAVING count(*) > 1) d`},
		{"changes to finished jobs", `SELECT count(*) FROM job_history WHERE old_status IN ('COMPLETED', 'FAILED')`},
		{"jobs whose final state differs from their last transition", `SELECT count(*) FROM jobs j JOIN LATERAL (
			SELECT new_status FROM job_history h WHERE h.job_id = j.id ORDER BY seq DESC LIMIT 1) h ON true WHERE h.new_status <> j.status`},
		{"worker outcomes written without the newest lease (a taken-over lease)", `SELECT count(*) FROM job_history h
			WHERE h.old_lease IS NOT NULL AND h.new_lease IS NULL AND h.new_error IS DISTINCT FROM 'Cancelled by user'
			  AND h.new_error IS DISTINCT FROM 'Worker lost while processing the job'
			  AND h.old_lease IS DISTINCT FROM (SELECT c.new_lease FROM job_history c
				WHERE c.job_id = h.job_id AND c.seq < h.seq AND c.new_attempts = c.old_attempts + 1 ORDER BY c.seq DESC LIMIT 1)`},
		// Claims are committed before handlers run: a completion is always
		// written by the holder of a lease, and every counted attempt was a
		// claim that wrote PROCESSING with a lease.
		{"completions not under a lease", `SELECT count(*) FROM job_history
			WHERE new_status = 'COMPLETED' AND old_status <> 'COMPLETED' AND old_lease IS NULL`},
		{"attempts counted without a claim (PROCESSING and a lease)", `SELECT count(*) FROM job_history
			WHERE new_attempts > old_attempts AND (new_lease IS NULL OR new_status <> 'PROCESSING')`},
	}
	for _, c := range checks {
		var n int
		var err error
		if strings.Contains(c.query, "$1") {
			err = db.Get(&n, c.query, "{"+strings.Join(ids, ",")+"}")
		} else {
			err = db.Get(&n, c.query)
		}
		if err != nil {
			t.Errorf("audit %s: %v", c.what, err)
		} else if n != 0 {
			t.Errorf("audit: %d %s", n, c.what)
		}
	}
	rep := auditReport{Errors: map[string]int{}}
	db.Get(&rep.Jobs, `SELECT count(*) FROM jobs`)
	db.Get(&rep.Completed, `SELECT count(*) FROM jobs WHERE status = 'COMPLETED'`)
	db.Get(&rep.Failed, `SELECT count(*) FROM jobs WHERE status = 'FAILED'`)
	db.Get(&rep.Claims, `SELECT count(*) FROM job_history WHERE new_attempts = old_attempts + 1`)
	var errs []struct {
		E string `db:"error"`
		N int    `db:"n"`
	}
	db.Select(&errs, `SELECT error, count(*) AS n FROM jobs WHERE error IS NOT NULL GROUP BY error`)
	for _, e := range errs {
		rep.Errors[e.E] = e.N
	}
	return rep
}

// ---------------------------------------------------------------------------
// Load.

// prompts are the job mix: most quick, some slow, some throttled once.
func prompt(i int) string {
	switch i % 10 {
	case 0, 5:
		return fmt.Sprintf("[[simulate:slow=1s]] Job %d. Maize prices fell in March. Roads flood in April.", i)
	case 3:
		return fmt.Sprintf("[[simulate:throttle-once]] Job %d. The harvest was late this year.", i)
	default:
		return fmt.Sprintf("Job %d. Rainfall was low. Farmers sold early at lower prices.", i)
	}
}

// ids collects the ids of created jobs.
type ids struct {
	mu  sync.Mutex
	ids []uuid.UUID
}

func (s *ids) add(id uuid.UUID) {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
}

func (s *ids) list() []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func (s *ids) pick(n int) uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return uuid.Nil
	}
	return s.ids[n%len(s.ids)]
}

// create posts an AI preview (the client must hold an admin token).
func (c *client) create(p string) result {
	return c.do(http.MethodPost, "/api/admin/prompts/preview", map[string]any{"prompt": p})
}

// runLoad runs creators and pollers until ctx ends or maxJobs are created.
// Every response goes to rec; created ids to created.
func runLoad(ctx context.Context, c *client, rec *recorder, created *ids, creators, pollers, maxJobs int) *sync.WaitGroup {
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(n.Add(1))
				if i > maxJobs {
					return
				}
				r := c.create(prompt(i))
				rec.add(r)
				if j, ok := r.job(); ok && r.status == http.StatusAccepted {
					created.add(j.ID)
				}
				sleepCtx(ctx, time.Duration(40+w*7)*time.Millisecond)
			}
		}()
	}
	for w := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; ctx.Err() == nil; k += pollers {
				if id := created.pick(k * 7919); id != uuid.Nil {
					rec.add(c.do(http.MethodGet, "/api/jobs/"+id.String(), nil))
				}
				sleepCtx(ctx, 30*time.Millisecond)
			}
		}()
	}
	return &wg
}

// probeReady polls /readyz every 100 ms until ctx ends.
func probeReady(ctx context.Context, c *client, rec *recorder) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			rec.add(c.do(http.MethodGet, "/readyz", nil))
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}()
	return &wg
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitRecovered waits until a create and a poll both succeed.
func waitRecovered(t testing.TB, c *client, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := c.create("recovery probe")
		if j, ok := r.job(); ok && r.status == http.StatusAccepted {
			if g := c.do(http.MethodGet, "/api/jobs/"+j.ID.String(), nil); g.status == http.StatusOK {
				return time.Since(start)
			}
		}
		if time.Since(start) > within {
			t.Fatalf("API did not recover within %v: last %d %s %v", within, r.status, r.body, r.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
