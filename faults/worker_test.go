package faults

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// TestWorkersKilled: a batch of 240 jobs (a third of them slow) runs on two
// worker processes; one worker after another is SIGKILLed, six times in a
// row, each replaced at once. Every job still ends, exactly once.
func TestWorkersKilled(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))

	const n = 240
	var created ids
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				p := fmt.Sprintf("[[simulate:slow=200ms]] Job %d. Maize prices fell in March.", i)
				if i%3 == 0 {
					p = fmt.Sprintf("[[simulate:slow=1500ms]] Job %d. Roads flood in April.", i)
				}
				r := c.create(p)
				if j, ok := r.job(); ok && r.status == http.StatusAccepted {
					created.add(j.ID)
				} else {
					t.Errorf("create: %d %s %v", r.status, r.body, r.err)
					return
				}
			}
		}()
	}
	wg.Wait()

	workers := []*proc{startWorker(t, dbURL), startWorker(t, dbURL)}
	// holding says whether the worker p is running jobs: each SIGKILL lands mid-job.
	holding := func(p *proc) bool {
		var n int
		if err := direct.Get(&n, `SELECT count(*) FROM jobs j JOIN processes p ON p.id = j.worker_id
			WHERE j.status = 'PROCESSING' AND p.kind = 'worker' AND p.pid = $1`, p.Cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	start := time.Now()
	for k := range 6 {
		eventually.True(t, 30*time.Second, fmt.Sprintf("worker %d running jobs before SIGKILL %d", k%2, k+1), func() bool { return holding(workers[k%2]) })
		workers[k%2].Kill()
		workers[k%2] = startWorker(t, dbURL)
	}
	waitAllTerminal(t, direct, 60*time.Second)
	rep := audit(t, direct, created.list())
	t.Logf("6 SIGKILLs, each of a worker running jobs; all %d jobs terminal %v after the first start; audit: %v", n, time.Since(start).Round(100*time.Millisecond), rep)
	if rep.Claims <= n {
		t.Logf("note: no job needed a second attempt (%d claims)", rep.Claims)
	}
}

// TestJobTimeout: with a 1 s attempt deadline a job whose model call takes
// 3 s times out on every attempt and fails after 3 with "Job attempt timed
// out"; the attempts are separated by the retry backoff.
func TestJobTimeout(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss)
	startWorker(t, dbURL, "JOBS_WORKER_JOB_TIMEOUT=1s", "JOBS_WORKER_BACKOFF_BASE=600ms", "JOBS_WORKER_BACKOFF_MAX=5s")
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))
	r := c.create("[[simulate:slow=3s]] Summarise the market risks.")
	j, ok := r.job()
	if !ok {
		t.Fatalf("create: %d %s %v", r.status, r.body, r.err)
	}
	var seen []string
	eventually.NoError(t, 30*time.Second, "the job finished", func() error {
		g := c.do(http.MethodGet, "/api/jobs/"+j.ID.String(), nil)
		cur, ok := g.job()
		if !ok {
			t.Fatalf("poll: %d %s %v", g.status, g.body, g.err)
		}
		if s := fmt.Sprintf("%s/%d/%s", cur.Status, cur.Attempts, cur.UpdatedAt); len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if !terminal(cur.Status) {
			return fmt.Errorf("polled states %v", seen)
		}
		j = cur
		return nil
	})
	t.Logf("polled states (status/attempts/updatedAt): %v", seen)
	if j.Status != "FAILED" || j.Attempts != 3 || j.Error == nil || *j.Error != "Job attempt timed out" {
		e := "<nil>"
		if j.Error != nil {
			e = *j.Error
		}
		t.Errorf("job ended %s after %d attempts with error %q; want FAILED, 3, \"Job attempt timed out\"", j.Status, j.Attempts, e)
	}
	// Each attempt: claimed, then ~1 s later retried (lease dropped, run_after
	// = now + backoff), then claimed again no earlier than run_after.
	var hist []struct {
		At       time.Time `db:"at"`
		Attempts int       `db:"new_attempts"`
		Claim    bool      `db:"claim"`
		RunAfter time.Time `db:"new_run_after"`
	}
	if err := direct.Select(&hist, `SELECT at, new_attempts, new_attempts = old_attempts + 1 AS claim, new_run_after
		FROM job_history WHERE job_id = $1 ORDER BY seq`, j.ID); err != nil {
		t.Fatal(err)
	}
	var claims []time.Time
	var lastEnd time.Time
	var lines []string
	for _, h := range hist {
		switch {
		case h.Claim:
			if !lastEnd.IsZero() {
				gap := h.At.Sub(lastEnd)
				lines = append(lines, fmt.Sprintf("backoff before attempt %d: %v", h.Attempts, gap.Round(time.Millisecond)))
				// Jitter keeps the delay in [base·2^(n-1)/2, base·2^(n-1)]: at least 300 ms here.
				if gap < 250*time.Millisecond {
					t.Errorf("attempt %d claimed %v after the previous attempt ended: no backoff", h.Attempts, gap)
				}
			}
			claims = append(claims, h.At)
		default:
			if len(claims) > 0 {
				lines = append(lines, fmt.Sprintf("attempt %d ran %v", h.Attempts, h.At.Sub(claims[len(claims)-1]).Round(time.Millisecond)))
			}
			lastEnd = h.At
		}
	}
	t.Logf("history: %v", lines)
	if len(claims) != 3 {
		t.Errorf("%d claims, want 3", len(claims))
	}
	audit(t, direct, nil)
}

// TestCrashingJobs: jobs that kill their worker process (SIGKILL, through
// the local provider's crash markers) at once after the claim, or mid-run,
// get exactly 3 counted attempts and end FAILED with "Worker lost while
// processing the job"; a job that crashes its first attempt only completes
// on its second. A supervisor loop here restarts the worker each time it
// dies, as systemd or Kubernetes would. One slot per worker, so each crash
// costs only the crashing job an attempt.
func TestCrashingJobs(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))

	want := map[string]struct {
		status   string
		attempts int
		err      string
	}{
		"[[simulate:crash]] Summarise the risks.":       {"FAILED", 3, "Worker lost while processing the job"},
		"[[simulate:crash=300ms]] Summarise the risks.": {"FAILED", 3, "Worker lost while processing the job"},
		"[[simulate:crash-once]] Summarise the risks.":  {"COMPLETED", 2, ""},
		"Maize prices fell in March.":                   {"COMPLETED", 1, ""},
	}
	byID := map[uuid.UUID]string{}
	var created []uuid.UUID
	for p := range want {
		r := c.create(p)
		j, ok := r.job()
		if !ok || r.status != http.StatusAccepted {
			t.Fatalf("create: %d %s %v", r.status, r.body, r.err)
		}
		byID[j.ID] = p
		created = append(created, j.ID)
	}

	env := []string{"JOBS_WORKER_CRASH_MARKERS=true", "JOBS_WORKER_CONCURRENCY=1", "JOBS_WORKER_LEASE=1s",
		"JOBS_WORKER_HEARTBEAT=200ms", "JOBS_WORKER_RESCUE_EVERY=200ms"}
	deadline := time.Now().Add(90 * time.Second)
	restarts := 0
	finished := waitTerminal(direct)
	for !allTerminal(t, direct) {
		w := startCrashingWorker(t, dbURL, env...)
		select {
		case <-w.Done():
			restarts++
		case <-time.After(time.Until(deadline)):
			t.Fatalf("jobs unfinished after 90 s and %d worker deaths", restarts)
		case <-finished:
		}
		if restarts > 20 {
			t.Fatalf("%d worker deaths: attempts are not bounded", restarts)
		}
	}
	for id, p := range byID {
		var j struct {
			Status   string  `db:"status"`
			Attempts int     `db:"attempts"`
			Error    *string `db:"error"`
		}
		if err := direct.Get(&j, `SELECT status, attempts, error FROM jobs WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		got := ""
		if j.Error != nil {
			got = *j.Error
		}
		if w := want[p]; j.Status != w.status || j.Attempts != w.attempts || got != w.err {
			t.Errorf("%q: %s, %d attempts, error %q; want %s, %d, %q", p, j.Status, j.Attempts, got, w.status, w.attempts, w.err)
		}
	}
	rep := audit(t, direct, created)
	t.Logf("%d worker deaths; audit: %v", restarts, rep)
	if restarts != 7 {
		t.Errorf("%d worker deaths; want 7 (3 + 3 + 1)", restarts)
	}
}

func allTerminal(t testing.TB, db *sqlx.DB) bool {
	left, err := unfinished(db)
	if err != nil {
		t.Fatal(err)
	}
	return left == 0
}

// waitTerminal closes its channel once every job is finished (or after two
// minutes, as a bound).
func waitTerminal(db *sqlx.DB) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		_ = eventually.Wait(2*time.Minute, func() error {
			left, err := unfinished(db)
			if err == nil && left > 0 {
				err = fmt.Errorf("%d jobs unfinished", left)
			}
			return err
		})
	}()
	return c
}
