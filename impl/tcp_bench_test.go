package impl_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/job"
)

// fixedReply is what a bare Go server answers in BenchmarkPollTCP: a
// finished job's JSON, as a status poll would carry it.
var fixedReply = []byte(`{"id":"019a0000-0000-7000-8000-000000000000","type":"AI_PREVIEW","status":"COMPLETED",` +
	`"result":{"output":"done"},"error":null,"attempts":1,"maxAttempts":3,"createdAt":"2026-12-07T06:00:00.000Z",` +
	`"startedAt":"2026-12-07T06:00:00.000Z","completedAt":"2026-12-07T06:00:00.000Z","updatedAt":"2026-12-07T06:00:00.000Z"}` + "\n")

// BenchmarkPollTCP polls a finished (cached) job, and an unfinished one
// (a database read each time), through real loopback TCP
// connections, kept alive, from 1, 16 and 64 goroutines, and in the same
// loop the same number of requests to a net/http server that answers a
// fixed reply of about the same size: the ratio (fixed ÷ jobsd, wall time
// per request) is the share of a bare server's speed the API keeps on its
// cheapest read. Alternating the two keeps a noisy machine from favouring
// either.
func BenchmarkPollTCP(b *testing.B) {
	for _, st := range []job.Status{job.StatusCompleted, job.StatusPending} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", st, clients), func(b *testing.B) { benchmarkPollTCP(b, st, clients) })
		}
	}
}

// benchmarkPollTCP times, per loop, clients concurrent polls (each client
// one kept-alive connection) of the fixed-reply server, then as many of
// jobsd.
func benchmarkPollTCP(b *testing.B, status job.Status, clients int) {
	// As in production at JOBS_LOG_LEVEL=warn: the request lines are dropped.
	bb := setupPoll(b, func(c *impl.Config) {
		c.Log = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	id := bb.job(b, status)
	api := httptest.NewServer(bb.e)
	defer api.Close()
	fixed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(fixedReply)
	}))
	defer fixed.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	get := func(url, token string) time.Duration {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Error(err) // from the clients' goroutines: Error, not Fatal
			return 0
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			b.Errorf("%s: status %d", url, resp.StatusCode)
		}
		return d
	}
	apiURL := api.URL + "/api/jobs/" + id
	// all runs clients goroutines, each polling url 10 times, and returns
	// the wall time.
	all := func(url, token string) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for range 10 {
					get(url, token)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	for range 20 { // warm the connections and the caches
		all(fixed.URL, "")
		all(apiURL, bb.token)
	}
	var tFixed, tAPI time.Duration
	b.ResetTimer()
	for b.Loop() {
		tFixed += all(fixed.URL, "")
		tAPI += all(apiURL, bb.token)
	}
	n := float64(b.N * clients * 10)
	b.ReportMetric(float64(tFixed.Microseconds())/n, "fixed-µs/req")
	b.ReportMetric(float64(tAPI.Microseconds())/n, "jobsd-µs/req")
	b.ReportMetric(float64(tFixed)/float64(tAPI), "ratio")
}
