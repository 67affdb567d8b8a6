package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// DeliveryStats is the delivery delay of one kind of waiter.
type DeliveryStats struct {
	Waiters  int     `json:"waiters"`
	Received int     `json:"received"`
	Missing  int     `json:"missing"`
	Negative int     `json:"negativeDelays"`
	P50ms    float64 `json:"p50ms"`
	P99ms    float64 `json:"p99ms"`
	Maxms    float64 `json:"maxms"`
}

// deliveryReadBatches is the API's JOBS_DB_READ_BATCHES here: its default.
const deliveryReadBatches = 2

// DeliveryResult is scenario 5: waiters parked on unfinished jobs, then the
// jobs completed by SQL; delay = the waiter saw COMPLETED − its batch's commit.
type DeliveryResult struct {
	Waiters   int `json:"waiters"`
	Jobs      int `json:"jobs"`
	Users     int `json:"users"`
	BatchSize int `json:"batchSize"`
	// Pace is how many jobs a second were completed, one per UPDATE; 0 means
	// a burst: every job in back-to-back UPDATEs of BatchSize ids.
	Pace       int `json:"jobsPerSecond"`
	APIDBConns int `json:"apiDbMaxConns"`
	// APIReadBatches is the API's JOBS_DB_READ_BATCHES: its status reads'
	// own connections, beside the pool's APIDBConns.
	APIReadBatches int `json:"apiReadBatches"`
	// DBConnsWaiting is pg_stat_activity in this database (the bench's own
	// sampling connection excluded) once every waiter was parked.
	DBConnsWaiting int `json:"dbConnsWhileWaiting"`
	// DBConnsBusyWaiting is how many of those were not idle.
	DBConnsBusyWaiting int `json:"dbConnsNotIdleWhileWaiting"`
	// DBConnsPeak is the most seen while the completions were delivered.
	DBConnsPeak     int           `json:"dbConnsPeakDuringDelivery"`
	APIOpenFDs      int           `json:"apiOpenFds"`
	ParkSeconds     float64       `json:"secondsToParkAll"`
	CommitSeconds   float64       `json:"secondsFirstToLastCommit"`
	LongPoll        DeliveryStats `json:"longPoll"`
	SSE             DeliveryStats `json:"sse"`
	OpenErrors      int           `json:"waiterErrors"`
	FirstError      string        `json:"firstError,omitempty"`
	Caveat          string        `json:"caveat"`
	ParkedAtTimeout int           `json:"parkedWhenCompletionStarted"`
}

type deliveryOpts struct {
	db         string
	waiters    int
	batch      int // ids per UPDATE in a burst
	pace       int // jobs completed per second, one per UPDATE; 0: a burst, back to back
	dbMaxConns int
}

// waiter is one client: job index, kind (long poll or SSE), and when it saw
// the COMPLETED job (zero if never).
type waiter struct {
	job  int
	sse  bool
	recv time.Time
}

func runDeliveryScenario(ctx context.Context, e *env, iss *tokenIssuer, o deliveryOpts) (*DeliveryResult, error) {
	url, err := e.createDB(ctx, o.db, true)
	if err != nil {
		return nil, err
	}
	nJobs := max(1, o.waiters/10)
	nUsers := max(1, nJobs/10)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		INSERT INTO jobs (id, user_id, type, status, input, attempts, created_at, updated_at, run_after)
		SELECT gen_random_uuid(), 'user-' || (g % $2), 'AI_PREVIEW', 'PENDING', '{"prompt":"x"}', 0,
			now(), now(), now() + interval '1 day'
		FROM generate_series(0, $1::int - 1) g
		RETURNING id, substr(user_id, 6)::int`, nJobs, nUsers)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	ids := make([]uuid.UUID, 0, nJobs)
	owner := make([]int, 0, nJobs)
	for rows.Next() {
		var id uuid.UUID
		var u int
		if err := rows.Scan(&id, &u); err != nil {
			rows.Close()
			return nil, err
		}
		ids, owner = append(ids, id), append(owner, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	users := make([]string, nUsers)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	tokens, err := iss.mint(users)
	if err != nil {
		return nil, err
	}
	// Each user here holds 100 waiters (10 per job): the read rate limit is
	// off, and the waiter cap stays on, counted in the waiters table as by
	// default, but above what the scenario opens.
	srv, base, err := e.startServe(ctx, "serve-"+o.db, url, iss.srv.URL, o.dbMaxConns, "JOBS_RATE_READ=0", "JOBS_USER_WAITERS=1000",
		"JOBS_DB_READ_BATCHES="+strconv.Itoa(deliveryReadBatches))
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	res := &DeliveryResult{Waiters: o.waiters, Jobs: nJobs, Users: nUsers, BatchSize: o.batch, Pace: o.pace, APIDBConns: o.dbMaxConns,
		APIReadBatches: deliveryReadBatches,
		Caveat: "commit time = when the bench saw the batch UPDATE's autocommit return, so a waiter can see the change " +
			"slightly before it (negative delays, counted); bench, jobsd and PostgreSQL share the CPUs; one run, no repeats"}
	logf("  seeded %d PENDING jobs over %d users; opening %d waiters (half long poll, half SSE)", nJobs, nUsers, o.waiters)

	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConns: o.waiters, MaxIdleConnsPerHost: o.waiters,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	wctx, cancelWaiters := context.WithTimeout(ctx, 3*time.Minute) // hard bound on every waiter
	defer cancelWaiters()
	ws := make([]waiter, o.waiters)
	var parked, openErrs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		openErrs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	opening := make(chan struct{}, 64) // bound concurrent connection setup
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range ws {
		ws[i] = waiter{job: i % nJobs, sse: i%2 == 1}
		wg.Go(func() {
			w := &ws[i]
			opening <- struct{}{}
			released := false
			release := func() {
				if !released {
					released = true
					<-opening
				}
			}
			defer release()
			id, tok := ids[w.job].String(), tokens[owner[w.job]]
			var err error
			if w.sse {
				err = waitSSE(wctx, client, base, id, tok, func() { parked.Add(1); release() }, &w.recv)
			} else {
				err = waitLongPoll(wctx, client, base, id, tok, func() { parked.Add(1); release() }, &w.recv)
			}
			if err != nil && wctx.Err() == nil {
				fail(err)
			}
		})
	}

	// Wait until every waiter is parked (or has failed), bounded.
	parkDeadline := time.Now().Add(2 * time.Minute)
	for parked.Load()+openErrs.Load() < int64(o.waiters) && time.Now().Before(parkDeadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	res.ParkSeconds = time.Since(t0).Seconds()
	res.ParkedAtTimeout = int(parked.Load())
	logf("  %d/%d waiters parked in %.1fs (%d open errors); settling 1 s", parked.Load(), o.waiters, res.ParkSeconds, openErrs.Load())
	time.Sleep(time.Second)

	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&res.DBConnsWaiting, &res.DBConnsBusyWaiting); err != nil {
		return nil, err
	}
	if des, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", srv.Cmd.Process.Pid)); err == nil {
		res.APIOpenFDs = len(des)
	}
	logf("  while waiting: %d DB connections (%d not idle; API pool max %d), API process %d open fds",
		res.DBConnsWaiting, res.DBConnsBusyWaiting, o.dbMaxConns, res.APIOpenFDs)

	// A second connection samples pg_stat_activity during delivery; the bench
	// connections (sampler and updater) are excluded from the count.
	sampler, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer sampler.Close(context.Background())
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for i := 0; i < 1000; i++ { // bounded: ≤ 1000 × 20 ms
			var n int64
			if err := sampler.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1`, conn.PgConn().PID()).Scan(&n); err == nil && n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Complete the jobs, paced one per UPDATE or in a burst of batches,
	// recording each UPDATE's commit time.
	commitAt := make([]time.Time, nJobs)
	first := time.Now()
	batch := o.batch
	if o.pace > 0 {
		batch = 1
	}
	for lo := 0; lo < nJobs; lo += batch {
		if o.pace > 0 {
			time.Sleep(time.Until(first.Add(time.Duration(lo) * time.Second / time.Duration(o.pace))))
		}
		hi := min(lo+batch, nJobs)
		if _, err := conn.Exec(ctx, `UPDATE jobs SET status = 'COMPLETED', result = '{"output":"x"}', attempts = 1,
			started_at = now(), completed_at = now(), updated_at = now(), version = version + 1 WHERE id = ANY($1)`, ids[lo:hi]); err != nil {
			close(stopSampling)
			return nil, fmt.Errorf("complete batch: %w", err)
		}
		t := time.Now()
		for j := lo; j < hi; j++ {
			commitAt[j] = t
		}
	}
	res.CommitSeconds = time.Since(first).Seconds()

	// Bounded wait for the deliveries: ~20 s after the last commit.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		logf("  not every waiter finished 20 s after the last commit; cancelling the rest")
	case <-ctx.Done():
	}
	cancelWaiters()
	<-done
	close(stopSampling)
	<-sampled
	res.DBConnsPeak = int(peak.Load())

	var lp, ss []time.Duration
	for i := range ws {
		w := &ws[i]
		st := &res.LongPoll
		if w.sse {
			st = &res.SSE
		}
		st.Waiters++
		if w.recv.IsZero() {
			st.Missing++
			continue
		}
		st.Received++
		d := w.recv.Sub(commitAt[w.job])
		if d < 0 {
			st.Negative++
			d = 0
		}
		if w.sse {
			ss = append(ss, d)
		} else {
			lp = append(lp, d)
		}
	}
	fill := func(st *DeliveryStats, d []time.Duration) {
		sortDurations(d)
		st.P50ms, st.P99ms = ms(pct(d, 50)), ms(pct(d, 99))
		if len(d) > 0 {
			st.Maxms = ms(d[len(d)-1])
		}
	}
	fill(&res.LongPoll, lp)
	fill(&res.SSE, ss)
	res.OpenErrors = int(openErrs.Load())
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	logf("  completed %d jobs in %.3fs; long poll p50 %.2fms p99 %.2fms max %.2fms missing %d; SSE p50 %.2fms p99 %.2fms max %.2fms missing %d; peak DB conns %d",
		nJobs, res.CommitSeconds, res.LongPoll.P50ms, res.LongPoll.P99ms, res.LongPoll.Maxms, res.LongPoll.Missing,
		res.SSE.P50ms, res.SSE.P99ms, res.SSE.Maxms, res.SSE.Missing, res.DBConnsPeak)
	if res.FirstError != "" {
		logf("  jobsd serve's last lines:\n%s", srv.logTail())
	}
	return res, nil
}

type jobStatus struct {
	Status string `json:"status"`
}

// waitLongPoll GETs the job for its ETag, then long-polls with
// If-None-Match until it sees COMPLETED (a 304 re-polls; bounded by ctx and
// a count). parkedFn runs once the first long-poll request is written.
func waitLongPoll(ctx context.Context, client *http.Client, base, id, tok string, parkedFn func(), recv *time.Time) error {
	get := func(url, etag string, trace *httptrace.ClientTrace) (int, string, []byte, error) {
		c := ctx
		if trace != nil {
			c = httptrace.WithClientTrace(ctx, trace)
		}
		req, _ := http.NewRequestWithContext(c, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("ETag"), b, err
	}
	code, etag, body, err := get(base+"/api/jobs/"+id, "", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK || etag == "" {
		return fmt.Errorf("long poll first GET: HTTP %d, ETag %q: %.200s", code, etag, body)
	}
	var once sync.Once
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(parkedFn) }}
	for range 10 {
		code, newTag, body, err := get(base+"/api/jobs/"+id+"?waitSeconds=30", etag, trace)
		if err != nil {
			return err
		}
		switch code {
		case http.StatusNotModified:
			continue
		case http.StatusOK:
			var s jobStatus
			if err := json.Unmarshal(body, &s); err != nil {
				return err
			}
			if s.Status == "COMPLETED" {
				*recv = time.Now()
				return nil
			}
			etag = newTag
		default:
			return fmt.Errorf("long poll: HTTP %d: %.200s", code, body)
		}
	}
	return fmt.Errorf("long poll: no COMPLETED after 10 polls")
}

// waitSSE opens the event stream and reads events until one carries the
// COMPLETED job; parkedFn runs after the first event.
func waitSSE(ctx context.Context, client *http.Client, base, id, tok string, parkedFn func(), recv *time.Time) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("SSE: HTTP %d: %s", resp.StatusCode, b)
	}
	br := bufio.NewReaderSize(resp.Body, 4096)
	events := 0
	for events < 100 {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("SSE: stream ended after %d events: %w", events, err)
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		events++
		var s jobStatus
		if err := json.Unmarshal(bytes.TrimSpace(data), &s); err != nil {
			return err
		}
		if s.Status == "COMPLETED" {
			*recv = time.Now()
			return nil
		}
		if events == 1 {
			parkedFn()
		}
		if strings.EqualFold(s.Status, "FAILED") {
			return fmt.Errorf("SSE: job FAILED")
		}
	}
	return fmt.Errorf("SSE: no COMPLETED in 100 events")
}
