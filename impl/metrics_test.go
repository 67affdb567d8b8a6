package impl_test

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
)

// TestMetrics runs the real API with its metrics, as serve wires them, on a
// real database and hub, makes requests of every kind (including a 404
// for a random id, unmatched paths and an unknown method), holds a long
// poll and an event stream open, and scrapes the metrics listener: the
// series exist, count what was done, keep waiting requests out of the
// latency histogram, and no label value is an id, a user or a raw path.
func TestMetrics(t *testing.T) {
	reg := metrics.NewRegistry()
	api := metrics.NewAPI(reg)
	b := setupPoll(t)
	metrics.RegisterStore(reg, b.st, nil)
	h, err := hub.New(b.url, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	metrics.RegisterListener(reg, hub.Channel, h.Up)
	e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hub: h, Metrics: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	msrv, err := metrics.Listen("127.0.0.1:0", reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msrv.Close() })

	do := func(method, path, body string, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+b.token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	expect := func(want int, method, path, body string, header ...string) *http.Response {
		t.Helper()
		resp, got := do(method, path, body, header...)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, got, want)
		}
		return resp
	}

	resp := expect(202, "POST", "/api/jobs", `{"type":"RISK_ANALYSIS","input":{"text":"Maize prices are volatile."}}`)
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/api/jobs/")
	etag := expect(200, "GET", "/api/jobs/"+id, "").Header.Get("ETag")
	expect(404, "GET", "/api/jobs/"+uuid.NewString(), "")
	expect(400, "GET", "/api/jobs/not-a-uuid", "")
	expect(404, "GET", "/api/nope/"+uuid.NewString()+"?user=alice", "")
	expect(404, "GET", "/api/jobs/"+uuid.NewString()+"/nope", "")
	expect(404, "GET", "/no/such/path", "")
	expect(405, "DELETE", "/api/jobs/"+uuid.NewString(), "")
	expect(405, "BREW", "/api/jobs", "")
	expect(200, "GET", "/healthz", "")

	// Wait until the hub listens, so that the cancellation below wakes the
	// waiting requests at once.
	waitFor(t, msrv.URL(), "the hub's LISTEN connection", func(s scraped) bool {
		return s.value("jobsd_listener_up", "channel", hub.Channel) == 1
	})

	// A long poll and an event stream wait on the job.
	polled, streamed := make(chan int, 1), make(chan string, 1)
	go func() {
		resp, _ := do("GET", "/api/jobs/"+id+"?waitSeconds=30", "", "If-None-Match", etag)
		polled <- resp.StatusCode
	}()
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/api/jobs/"+id+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			streamed <- err.Error()
			return
		}
		defer resp.Body.Close()
		var last string
		for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "data: ") {
				last = sc.Text()
			}
		}
		streamed <- last
	}()
	waitFor(t, msrv.URL(), "the long poll and the event stream to be open", func(s scraped) bool {
		return s.value("jobsd_http_open_streams", "kind", "long_poll") == 1 &&
			s.value("jobsd_http_open_streams", "kind", "events") == 1
	})
	expect(200, "POST", "/api/jobs/"+id+"/cancel", "")
	if code := <-polled; code != 200 {
		t.Errorf("long poll woken by the cancellation = %d, want 200", code)
	}
	if last := <-streamed; !strings.Contains(last, "Cancelled by user") {
		t.Errorf("event stream's last event = %q", last)
	}
	expect(409, "POST", "/api/jobs/"+id+"/cancel", "")
	expect(401, "GET", "/api/jobs/"+id, "", "Authorization", "Bearer nope")

	scrape := waitFor(t, msrv.URL(), "the streams to close", func(s scraped) bool {
		return s.value("jobsd_http_open_streams", "kind", "long_poll") == 0 &&
			s.value("jobsd_http_open_streams", "kind", "events") == 0
	})

	for _, name := range []string{
		"jobsd_http_requests_total", "jobsd_http_request_duration_seconds", "jobsd_http_requests_in_flight",
		"jobsd_http_open_streams", "jobsd_jobs_created_total", "jobsd_jobs_cancelled_total",
		"jobsd_jobs", "jobsd_oldest_pending_age_seconds", "jobsd_queue_stats_capped", "jobsd_listener_up",
		"go_sql_open_connections", "go_sql_wait_count_total", "go_goroutines", "process_resident_memory_bytes",
	} {
		if scrape[name] == nil {
			t.Errorf("series %s is missing", name)
		}
	}
	const jobRoute = "/api/jobs/:id"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"jobsd_http_requests_total", []string{"route", "/api/jobs", "method", "POST", "code", "202"}, 1},
		// 200, 404 (a random id), 400 (not an id), 401, and the long poll's 200.
		{"jobsd_http_requests_total", []string{"route", jobRoute, "method", "GET"}, 5},
		{"jobsd_http_requests_total", []string{"route", jobRoute, "method", "GET", "code", "404"}, 1},
		{"jobsd_http_requests_total", []string{"route", jobRoute, "method", "GET", "code", "401"}, 1},
		{"jobsd_http_requests_total", []string{"route", jobRoute, "method", "DELETE", "code", "405"}, 1},
		{"jobsd_http_requests_total", []string{"route", metrics.RouteUnmatched, "method", "GET", "code", "404"}, 3},
		{"jobsd_http_requests_total", []string{"route", "/api/jobs", "method", "other", "code", "405"}, 1},
		{"jobsd_http_requests_total", []string{"route", "/api/jobs/:id/events", "method", "GET", "code", "200"}, 1},
		{"jobsd_http_requests_total", []string{"route", "/api/jobs/:id/cancel", "method", "POST"}, 2},
		{"jobsd_http_requests_total", []string{"route", "/healthz", "code", "200"}, 1},
		// The long poll is not a latency: four of the five GETs are.
		{"jobsd_http_request_duration_seconds", []string{"route", jobRoute, "method", "GET"}, 4},
		{"jobsd_http_request_duration_seconds", []string{"route", "/api/jobs/:id/events"}, 0},
		{"jobsd_http_requests_in_flight", nil, 0},
		{"jobsd_jobs_created_total", []string{"type", "RISK_ANALYSIS"}, 1},
		{"jobsd_jobs_created_total", []string{"type", "AI_PREVIEW"}, 0},
		{"jobsd_jobs_cancelled_total", nil, 1},
		{"jobsd_listener_up", []string{"channel", hub.Channel}, 1},
		{"go_sql_max_open_connections", []string{"db_name", metrics.DBName}, 20},
		{"go_sql_max_open_connections", []string{"db_name", metrics.StatusReadsDBName}, 2},
	} {
		if got := scrape.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The queue: one PENDING job now, made after the scrapes above cached
	// the empty queue; the next reading (at most QueueStatsTTL later) has it.
	b.job(t, job.StatusPending)
	scrape = waitFor(t, msrv.URL(), "the queue gauges to see the new job", func(s scraped) bool {
		return s.value("jobsd_jobs", "status", "PENDING", "type", "AI_PREVIEW") == 1
	})

	// Every label value of every series comes from a closed set.
	routes := map[string]bool{metrics.RouteUnmatched: true}
	for _, r := range e.Routes() {
		routes[r.Path] = true
	}
	uuidLike := regexp.MustCompile(`[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}`)
	for name, mf := range scrape {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				v := lp.GetValue()
				switch {
				case uuidLike.MatchString(v):
					t.Errorf("%s{%s=%q}: an id in a label", name, lp.GetName(), v)
				case strings.Contains(v, "alice") || strings.Contains(v, "nope") || strings.Contains(v, "such") || strings.Contains(v, "?"):
					t.Errorf("%s{%s=%q}: a user or a raw path in a label", name, lp.GetName(), v)
				case lp.GetName() == "route" && !routes[v]:
					t.Errorf("%s{route=%q}: not a route template", name, v)
				case lp.GetName() == "method" && v == "BREW":
					t.Errorf("%s{method=%q}: an unknown method kept", name, v)
				}
			}
		}
	}
}

// scraped is one scrape of /metrics, by metric family name.
type scraped map[string]*dto.MetricFamily

// value sums the series of name whose labels include the given pairs
// (histograms: their sample counts).
func (s scraped) value(name string, labels ...string) float64 {
	var sum float64
	mf := s[name]
	if mf == nil {
		return -1
	}
series:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func scrapeOnce(t *testing.T, url string) scraped {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// waitFor scrapes until cond holds (QueueStatsTTL and the hub's connection
// set the pace), failing after a generous deadline.
func waitFor(t *testing.T, url, what string, cond func(scraped) bool) scraped {
	t.Helper()
	var s scraped
	eventually.True(t, 30*time.Second, what, func() bool {
		s = scrapeOnce(t, url)
		return cond(s)
	})
	return s
}
