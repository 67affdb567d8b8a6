package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// TestAPISIGTERM: SIGTERM under load. A long poll (waitSeconds=5) in flight
// gets its answer (the server waits for it), short requests in flight
// finish, new connections are refused, and the process exits 0.
func TestAPISIGTERM(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	iss := newIssuer(t)
	metricsAddr := freeAddr(t)
	api := startServe(t, dbURL, iss, "JOBS_METRICS_ADDR="+metricsAddr)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))
	// No worker: the job stays PENDING, so the long poll waits its 5 s.
	r := c.create("Waits for no one.")
	j, ok := r.job()
	if !ok {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	etag := c.do(http.MethodGet, "/api/jobs/"+j.ID.String(), nil).hdr.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on the job")
	}
	long := make(chan result, 1)
	longAt := time.Now()
	go func() {
		long <- c.do(http.MethodGet, "/api/jobs/"+j.ID.String()+"?waitSeconds=5", nil, "If-None-Match", etag)
	}()
	ctx, stop := context.WithCancel(context.Background())
	var rec recorder
	var created ids
	created.add(j.ID)
	load := runLoad(ctx, c, &rec, &created, 2, 4, 10000)
	// SIGTERM once the server holds the long poll and has answered some load.
	eventually.True(t, 10*time.Second, "the long poll open on the server and 20 requests answered", func() bool {
		return openStreams(t, metricsAddr, "long_poll") >= 1 && len(rec.all()) >= 20
	})
	termAt := time.Now()
	if err := api.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New connections are refused soon after the signal.
	var refusedAfter time.Duration
	err := eventually.Wait(3*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", api.Addr, time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Neither accepted nor refused: seen once in CI, on a machine
			// busy with the parallel fault tests, where a dial around the
			// listener's close timed out after its second. (Dialling a
			// closing listener 48,000 times on an idle machine gave no
			// timeout.) It says nothing about the server: dial again.
			return err
		}
		if err != nil {
			// A connection still in the accept queue when the listener
			// closes is reset: as clean a refusal as ECONNREFUSED.
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("dial after SIGTERM: %v, want connection refused", err)
			}
			refusedAfter = time.Since(termAt)
			return nil
		}
		conn.Close()
		return errors.New("connection accepted")
	})
	if err != nil {
		t.Errorf("new connections not refused 3 s after SIGTERM: %v", err)
	}
	lr := <-long
	select {
	case <-api.Done():
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not exit within 40 s of SIGTERM")
	}
	exitAfter := time.Since(termAt)
	stop()
	load.Wait()

	t.Logf("SIGTERM: new connections refused after %v; long poll (waitSeconds=5, started %v before SIGTERM) answered %d after %v; process exited after %v with %v",
		refusedAfter.Round(time.Millisecond), termAt.Sub(longAt).Round(time.Millisecond), lr.status, lr.dur.Round(time.Millisecond), exitAfter.Round(time.Millisecond), api.Err())
	if lr.err != nil || lr.status != http.StatusNotModified {
		t.Errorf("long poll in flight at SIGTERM: %d %v, want its 304", lr.status, lr.err)
	}
	var exit *exec.ExitError
	if errors.As(api.Err(), &exit) {
		t.Errorf("serve exited with %v, want 0", api.Err())
	}
	// Requests sent before SIGTERM were answered; those after it failed
	// with a refused (or closed) connection, never a 5xx or a hang.
	var before, afterOK, afterRefused, afterOther int
	var other []string
	for _, r := range rec.all() {
		switch {
		case r.start.Before(termAt.Add(-100*time.Millisecond)) && r.err == nil && r.status < 500:
			before++
		case r.start.Before(termAt.Add(-100 * time.Millisecond)):
			// (Requests sent in the last 100 ms may race the signal.)
			t.Errorf("request sent before SIGTERM failed: %s", r.problem())
		case r.err == nil && r.status < 500:
			afterOK++
		case r.err != nil && (errors.Is(r.err, syscall.ECONNREFUSED) || errors.Is(r.err, syscall.ECONNRESET)):
			afterRefused++
		default:
			afterOther++
			if len(other) < 5 {
				other = append(other, r.problem())
			}
		}
	}
	t.Logf("requests: %d answered before SIGTERM; after it %d answered (in flight or on kept-alive connections), %d refused, %d other %q",
		before, afterOK, afterRefused, afterOther, other)
	for _, r := range rec.all() {
		if r.status >= 500 {
			t.Errorf("5xx during shutdown: %s", r.problem())
		}
	}
}

// TestJWKSDown: keys already fetched keep working when the JWKS endpoint
// is closed; an unknown kid is a quick 401; a slow endpoint at cold start
// bounds the first request (401, no hang). Rotation is checked at the auth
// package level, where the refetch interval can be shortened (the API's is
// one minute and not configurable).
func TestJWKSDown(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss)
	base := "http://" + api.Addr
	get := func(tok string) result { return newClient(base, tok).do(http.MethodGet, "/api/jobs?limit=1", nil) }
	if r := get(iss.token(keyA, "alice", false)); r.status != http.StatusOK {
		t.Fatalf("with the JWKS up: %d %s", r.status, r.body)
	}
	iss.stop()
	r := get(iss.token(keyA, "bob", false)) // a new token: not in the result cache
	t.Logf("JWKS closed, known kid: %d in %v", r.status, r.dur.Round(time.Microsecond))
	if r.status != http.StatusOK {
		t.Errorf("known kid with the JWKS closed: %d %s, want 200", r.status, r.body)
	}
	r = get(iss.token(keyB, "carol", false))
	t.Logf("JWKS closed, unknown kid: %d in %v", r.status, r.dur.Round(time.Microsecond))
	if r.status != http.StatusUnauthorized || r.problem() != "" || r.dur > 7*time.Second {
		t.Errorf("unknown kid with the JWKS closed: %d %s after %v, want a prompt 401", r.status, r.body, r.dur)
	}

	// Cold start against a JWKS endpoint that answers after 10 s: the
	// verifier's 5 s HTTP timeout bounds the first request.
	iss.resume()
	iss.delay.Store(int64(10 * time.Second))
	api2 := startServe(t, dbURL, iss)
	base2 := "http://" + api2.Addr
	r = newClient(base2, iss.token(keyA, "dave", false)).do(http.MethodGet, "/api/jobs?limit=1", nil)
	t.Logf("cold start, JWKS answering after 10 s: %d in %v", r.status, r.dur.Round(time.Millisecond))
	if r.status != http.StatusUnauthorized || r.problem() != "" || r.dur > 8*time.Second {
		t.Errorf("cold start with a slow JWKS: %d %s after %v, want a 401 within the 5 s fetch timeout", r.status, r.body, r.dur)
	}
	iss.delay.Store(0)
	r = newClient(base2, iss.token(keyA, "dave", false)).do(http.MethodGet, "/api/jobs?limit=1", nil)
	t.Logf("JWKS fast again, right after the failed cold fetch: %d in %v (the refetch is rate-limited to once a minute, failures included)",
		r.status, r.dur.Round(time.Millisecond))

	// Rotation, in process with a short refetch interval.
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.url, ClientIDs: []string{clientID}, MinRefreshInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(key string, tok string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		start := time.Now()
		_, err := v.Verify(ctx, tok)
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("verify %s took %v", key, d)
		}
		return err
	}
	if err := verify("A", iss.token(keyA, "erin", false)); err != nil {
		t.Fatalf("key A: %v", err)
	}
	iss.stop()
	iss.iss.Store(auth.NewIssuer(keyB, iss.url)) // rotated while the endpoint is down
	// Key B is refused, first by the rate limit, then by a fetch that fails
	// against the closed endpoint: wait for the latter.
	eventually.NoError(t, 10*time.Second, "key B refused by a failed fetch", func() error {
		err := verify("B", iss.token(keyB, "frank", false))
		if errors.Is(err, auth.ErrUnauthorized) && strings.Contains(err.Error(), "fetching key set") {
			return nil
		}
		return fmt.Errorf("key B while the JWKS is down: %w, want unauthorized after a failed fetch", err)
	})
	// The failed fetch kept the cached keys.
	if err := verify("A", iss.token(keyA, "erin2", false)); err != nil {
		t.Errorf("key A while the JWKS is down: %v", err)
	}
	iss.resume()
	// Accepted once the next refetch after the failure is allowed.
	eventually.NoError(t, 10*time.Second, "rotated key B accepted after the JWKS came back", func() error {
		return verify("B", iss.token(keyB, "frank2", false))
	})
	err = verify("A", iss.token(keyA, "erin3", false))
	t.Logf("rotation: key B accepted once the JWKS was back; a new key-A token after rotation: %v", err)
	if err == nil {
		t.Errorf("retired key A still accepted for a new token")
	}
}

// TestStatementTimeouts: statements that wait (a row or table lock held from
// another connection) or requests that wait for a pool of 2 connections end
// within the store's 5 s query timeout as the documented 503; nothing hangs.
func TestStatementTimeouts(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss, "JOBS_DB_MAX_CONNS=2")
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))
	var jobs []string
	for i := range 8 {
		r := c.create("Locked job " + string(rune('a'+i)))
		j, ok := r.job()
		if !ok {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		jobs = append(jobs, j.ID.String())
	}

	// 1. A row lock: cancelling the locked job waits on it.
	tx, err := direct.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, jobs[0]); err != nil {
		t.Fatal(err)
	}
	r := c.do(http.MethodPost, "/api/jobs/"+jobs[0]+"/cancel", nil)
	t.Logf("cancel of a row-locked job: %d %s in %v", r.status, bytes.TrimSpace(r.body), r.dur.Round(time.Millisecond))
	if r.status != http.StatusServiceUnavailable || r.problem() != "" || r.dur > outageBound {
		t.Errorf("cancel of a locked row: %d %s after %v, want the documented 503 within %v", r.status, r.body, r.dur, outageBound)
	}
	g := c.do(http.MethodGet, "/api/jobs/"+jobs[0], nil)
	t.Logf("poll of the row-locked job: %d in %v (reads do not wait for row locks)", g.status, g.dur.Round(time.Millisecond))

	// 2. The pool of 2 full: 2 cancels hold both connections waiting on
	// the lock, everything else queues for a connection.
	var rec recorder
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); rec.add(c.do(http.MethodPost, "/api/jobs/"+jobs[0]+"/cancel", nil)) }()
	}
	eventually.True(t, 4*time.Second, "both pool connections waiting on the row lock", func() bool {
		var waiting int
		if err := direct.Get(&waiting, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`); err != nil {
			t.Fatal(err)
		}
		return waiting >= 2
	})
	for i := range 6 {
		wg.Add(1)
		go func() { defer wg.Done(); rec.add(c.do(http.MethodGet, "/api/jobs/"+jobs[1+i], nil)) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); rec.add(c.do(http.MethodGet, "/readyz", nil)) }()
	wg.Wait()
	tx.Rollback()
	all := rec.all()
	for _, r := range all {
		if r.problem() != "" || r.dur > outageBound {
			t.Errorf("with the pool full: %s %s: %d %s after %v", r.method, r.path, r.status, r.body, r.dur)
		}
	}
	t.Logf("pool of 2 held by cancels waiting on a row lock: 4 cancels + 6 polls + readyz: %v", summarize(all))

	// 3. A table lock: every statement waits, polls included.
	tx, err = direct.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var rec2 recorder
	for i := range 6 {
		wg.Add(1)
		go func() { defer wg.Done(); rec2.add(c.do(http.MethodGet, "/api/jobs/"+jobs[1+i], nil)) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); rec2.add(c.create("During a table lock")) }()
	wg.Wait()
	tx.Rollback()
	all = rec2.all()
	for _, r := range all {
		if r.problem() != "" || r.dur > outageBound {
			t.Errorf("with the table locked: %s %s: %d %s after %v", r.method, r.path, r.status, r.body, r.dur)
		}
	}
	t.Logf("table locked (ACCESS EXCLUSIVE): 6 polls + 1 create: %v", summarize(all))

	// 4. Afterwards everything works at once.
	if r := c.do(http.MethodPost, "/api/jobs/"+jobs[0]+"/cancel", nil); r.status != http.StatusOK {
		t.Errorf("cancel after the locks: %d %s", r.status, r.body)
	}
	waitRecovered(t, c, 10*time.Second)
}

// TestAPISIGTERMEventStream: an event stream open at SIGTERM on a job that
// does not finish ends cleanly when shutdown starts (the client reconnects
// elsewhere), so the process exits 0 at once instead of waiting out its
// 30 s shutdown budget.
func TestAPISIGTERMEventStream(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	iss := newIssuer(t)
	metricsAddr := freeAddr(t)
	api := startServe(t, dbURL, iss, "JOBS_METRICS_ADDR="+metricsAddr)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))
	j, ok := c.create("Never picked up: no worker.").job()
	if !ok {
		t.Fatal("create failed")
	}
	stream := make(chan result, 1)
	go func() {
		sc := newClient(c.base, c.token)
		sc.hc.Timeout = 60 * time.Second
		stream <- sc.do(http.MethodGet, "/api/jobs/"+j.ID.String()+"/events", nil)
	}()
	eventually.True(t, 10*time.Second, "the event stream open on the server", func() bool {
		return openStreams(t, metricsAddr, "events") >= 1
	})
	termAt := time.Now()
	if err := api.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-api.Done():
	case <-time.After(45 * time.Second):
		t.Fatal("serve did not exit within 45 s of SIGTERM")
	}
	sr := <-stream
	t.Logf("event stream open at SIGTERM: process exited after %v with %v; the stream ended after %v (%v)",
		time.Since(termAt).Round(time.Millisecond), api.Err(), sr.dur.Round(time.Millisecond), sr.err)
	var exit *exec.ExitError
	if errors.As(api.Err(), &exit) {
		t.Errorf("serve exited with %v, want 0", api.Err())
	}
	if d := time.Since(termAt); d > 10*time.Second {
		t.Errorf("serve took %v to exit: the open stream held the shutdown", d)
	}
	if sr.err != nil {
		t.Errorf("the stream was cut (%v) instead of ending", sr.err)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a process that must be told its address in advance.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// openStreams reads jobsd_http_open_streams{kind} from the metrics listener
// at addr: how many long polls or event streams the server holds now.
func openStreams(t *testing.T, addr, kind string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	prefix := `jobsd_http_open_streams{kind="` + kind + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("no %s... line in the metrics", prefix)
	return 0
}
