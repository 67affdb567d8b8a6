package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// TestPgBouncer runs `jobsd serve` and `jobsd worker` with their pools
// through one PgBouncer in transaction mode (JOBS_DB_POOLER=transaction)
// and their LISTEN connections on JOBS_DIRECT_DATABASE_URL, and checks
// that everything works: creates, polls, lists, long polls woken by the
// API's LISTEN, a claim woken by the worker's LISTEN (its fallback poll is
// an hour), the cancel of a running job, and the audit.
// The pooler's own counters show that the pools went through it, and
// pg_stat_activity that the LISTENs did not.
func TestPgBouncer(t *testing.T) {
	proctest.SkipShort(t, "PgBouncer")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	b := pgtest.PgBouncer(t, dbURL)
	db := openDirect(t, dbURL)
	installHistory(t, db)
	iss := newIssuer(t)
	// The direct connections name themselves, for pg_stat_activity.
	direct := withParam(t, dbURL, "application_name", "jobsd-direct")
	env := pooledEnv(b, dbURL, direct)
	// The waiter cap on: each waiting long poll has its row in waiters.
	api := startServe(t, dbURL, iss, append([]string{"JOBS_USER_WAITERS=20"}, env...)...)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))
	ctx := t.Context()

	// The API's LISTEN: a long poll of a job that nothing runs yet
	// returns when the worker, started meanwhile, claims it, and not at
	// its 18 s end, which only a notification can cut short. The job runs
	// for a minute, holding one of the worker's four slots, until it is
	// cancelled below.
	slow := mustCreate(t, c, "[[simulate:slow=60s]] runs until cancelled")
	woken := longPollOnce(ctx, c, slow, 18)
	eventually.True(t, 10*time.Second, "the long poll is waiting (a row in waiters)", func() bool {
		var n int
		return db.Get(&n, `SELECT count(*) FROM waiters`) == nil && n == 1
	})
	startWorker(t, dbURL, append([]string{"JOBS_WORKER_POLL=1h", "JOBS_WORKER_CONCURRENCY=4"}, env...)...)
	wokenBy(t, <-woken, "the worker's claim")

	// The worker's LISTEN: its claim loop now waits with three free slots,
	// no slot about to free and its next poll an hour away, so only
	// jobs_inserted can make it claim a new job.
	next := mustCreate(t, c, "created while the worker waits")
	if d := waitStarted(t, c, next, 10*time.Second); d > 10*time.Second {
		t.Fatalf("a job created while the worker waited started after %v", d)
	}

	// A burst from several clients at once, each job polled once, then the
	// slow job cancelled while it runs (jobs_cancelled stops its handler).
	created := &ids{}
	created.add(slow)
	created.add(next)
	var wg sync.WaitGroup
	problemsSeen := make(chan string, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				r := c.create(prompt(w*10 + i))
				if p := r.problem(); p != "" || r.status != http.StatusAccepted {
					problemsSeen <- fmt.Sprintf("create: %d %s", r.status, p)
					continue
				}
				j, _ := r.job()
				created.add(j.ID)
				if p := c.do(http.MethodGet, "/api/jobs/"+j.ID.String(), nil).problem(); p != "" {
					problemsSeen <- p
				}
			}
		})
	}
	wg.Wait()
	close(problemsSeen)
	for p := range problemsSeen {
		t.Error(p)
	}
	if r := c.do(http.MethodPost, "/api/jobs/"+slow.String()+"/cancel", nil); r.status != http.StatusOK {
		t.Errorf("cancel of the running job: %d %s", r.status, r.body)
	}
	waitAllTerminal(t, db, 30*time.Second)
	if r := c.do(http.MethodGet, "/api/jobs?limit=100", nil); r.status != http.StatusOK || strings.Count(string(r.body), `"id"`) != len(created.list()) {
		t.Errorf("list: %d, %d jobs in %d bytes; want %d", r.status, strings.Count(string(r.body), `"id"`), len(r.body), len(created.list()))
	}
	rep := audit(t, db, created.list())
	t.Logf("through pgbouncer: %v", rep)
	if rep.Failed != 1 {
		t.Errorf("%d jobs FAILED; want the cancelled one alone", rep.Failed)
	}

	// Where the connections went: the pools' transactions through the
	// pooler, the three LISTENs (the API's, the worker's two channels on
	// one connection) on direct connections.
	eventually.NoError(t, 70*time.Second, "pgbouncer counted the pools' transactions", func() error {
		n, err := b.Transactions(ctx, dbURL, dbName(t, dbURL))
		if err == nil && n < int64(len(created.list())) {
			err = fmt.Errorf("%d transactions through pgbouncer, fewer than the %d jobs created", n, len(created.list()))
		}
		return err
	})
	var listening []string
	if err := db.Select(&listening, `SELECT query FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'jobsd-direct' AND query LIKE 'LISTEN%' ORDER BY 1`); err != nil {
		t.Fatal(err)
	}
	if len(listening) != 2 {
		t.Errorf("direct connections whose last statement is a LISTEN: %q; want the API's and the worker's", listening)
	}
	if n := api.count("request failed"); n > 0 {
		t.Errorf("the API logged %d failed requests", n)
	}
}

// wokenBy fails t unless r is a long poll that returned the job changed
// (PROCESSING or COMPLETED) well before its 18 s: woken by a notification.
func wokenBy(t *testing.T, r result, what string) {
	t.Helper()
	j, ok := r.job()
	if r.status != http.StatusOK || !ok || (j.Status != "PROCESSING" && j.Status != "COMPLETED") || r.dur > 10*time.Second {
		t.Fatalf("long poll waiting for %s: %d after %v: %s %v; want the job changed, well before 18 s", what, r.status, r.dur.Round(time.Millisecond), r.body, r.err)
	}
	t.Logf("long poll woken by %s after %v", what, r.dur.Round(time.Millisecond))
}

// waitStarted long-polls the job until it is no longer PENDING, within
// the bound, and returns how long that took from the call.
func waitStarted(t *testing.T, c *client, id uuid.UUID, within time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for time.Since(begin) < within {
		r := c.do(http.MethodGet, "/api/jobs/"+id.String(), nil)
		j, ok := r.job()
		if !ok {
			t.Fatalf("poll of %v: %d %s %v", id, r.status, r.body, r.err)
		}
		if j.Status != "PENDING" {
			return time.Since(begin)
		}
		c.do(http.MethodGet, fmt.Sprintf("/api/jobs/%s?waitSeconds=%d", id, int(within.Seconds())), nil, "If-None-Match", r.hdr.Get("ETag"))
	}
	t.Fatalf("%v still PENDING after %v", id, within)
	return 0
}

// mustCreate creates an AI preview with prompt p and returns its id.
func mustCreate(t *testing.T, c *client, p string) uuid.UUID {
	t.Helper()
	r := c.create(p)
	j, ok := r.job()
	if r.status != http.StatusAccepted || !ok {
		t.Fatalf("create: %d %s %v", r.status, r.body, r.err)
	}
	return j.ID
}

// longPollOnce reads the job's ETag and then long-polls it for up to wait
// seconds with If-None-Match; the channel gets the answer.
func longPollOnce(ctx context.Context, c *client, id uuid.UUID, wait int) <-chan result {
	out := make(chan result, 1)
	go func() {
		first := c.do(http.MethodGet, "/api/jobs/"+id.String(), nil)
		if first.status != http.StatusOK || ctx.Err() != nil {
			out <- first
			return
		}
		out <- c.do(http.MethodGet, fmt.Sprintf("/api/jobs/%s?waitSeconds=%d", id, wait), nil, "If-None-Match", first.hdr.Get("ETag"))
	}()
	return out
}

// withParam returns the postgres:// URL raw with the query parameter set.
func withParam(t *testing.T, raw, name, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// dbName is the database of a postgres:// URL.
func dbName(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
