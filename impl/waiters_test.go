package impl_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/job"
)

// TestManyWaiters holds a thousand long polls and two hundred event streams
// open over real connections while the jobs they wait on change and finish:
// every client sees its job's terminal state, and the API's database
// connections stay bounded by its pool however many clients wait.
func TestManyWaiters(t *testing.T) {
	const jobs, pollers, streamers = 100, 1000, 200
	b := setupPoll(t)
	h, err := hub.New(b.url, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hub: h})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: pollers + streamers, MaxConnsPerHost: 0}
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)

	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = b.job(t, job.StatusPending)
	}
	var finished atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, pollers+streamers)
	for i := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := longPollUntilDone(hc, srv.URL, b.token, ids[i%jobs]); err != nil {
				errs <- err
				return
			}
			finished.Add(1)
		}()
	}
	for i := range streamers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := streamUntilDone(hc, srv.URL, b.token, ids[i%jobs]); err != nil {
				errs <- err
				return
			}
			finished.Add(1)
		}()
	}
	eventually.True(t, 30*time.Second, fmt.Sprintf("%d of %d clients waiting", (pollers+streamers)*9/10, pollers+streamers), func() bool {
		return h.Waiting() >= (pollers+streamers)*9/10
	})
	var conns int
	if err := b.st.DB().Get(&conns, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients waiting; %d database connections in use", h.Waiting(), conns)
	if conns > 25 { // the pool (20), the hub's LISTEN connection, and this query's
		t.Errorf("%d database connections for %d waiting clients", conns, h.Waiting())
	}

	ctx := context.Background()
	for _, id := range ids {
		if _, err := b.st.DB().ExecContext(ctx, `UPDATE jobs SET status = 'PROCESSING', attempts = 1, started_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if _, err := b.st.DB().ExecContext(ctx, `WITH q AS (DELETE FROM job_queue WHERE id = $1) UPDATE jobs SET status = 'COMPLETED', result = '{"output":"ok"}', completed_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		t.Fatalf("only %d of %d clients saw their job finish", finished.Load(), pollers+streamers)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// longPollUntilDone long-polls with the last ETag until the job is COMPLETED.
func longPollUntilDone(hc *http.Client, base, token, id string) error {
	etag := ""
	for range 20 {
		req, _ := http.NewRequest("GET", base+"/api/jobs/"+id+"?waitSeconds=30", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			etag = resp.Header.Get("ETag")
			if strings.Contains(string(body), `"status":"COMPLETED"`) {
				return nil
			}
		case 304:
		default:
			return fmt.Errorf("long poll %s: %d %s", id, resp.StatusCode, body)
		}
	}
	return fmt.Errorf("long poll %s: never finished", id)
}

// streamUntilDone reads the job's event stream until it ends, and checks the
// last event was the finished job.
func streamUntilDone(hc *http.Client, base, token, id string) error {
	req, _ := http.NewRequest("GET", base+"/api/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	last := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			last = data
		}
	}
	if !strings.Contains(last, `"status":"COMPLETED"`) {
		return fmt.Errorf("stream %s ended after %q", id, last)
	}
	return nil
}
