package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// value is the value of the series name{labels} in reg (a counter's,
// gauge's or untyped value, or a histogram's sample count), and whether it
// exists.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func mustValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(t, reg, name, labels)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestNilWorker: every method of a nil *Worker and a nil *API is a no-op.
func TestNilWorker(t *testing.T) {
	var w *Worker
	w.Attempts("AI_PREVIEW").Started()
	w.Attempts("AI_PREVIEW").Ended(OutcomeCompleted, "", time.Second)
	w.Attempts("AI_PREVIEW").Pickup(time.Second)
	w.Rescued(1, 1)
	w.ParseKilled(KillMemory)
	w.SetInFlight(3)
	var a *API
	a.JobCreated("AI_PREVIEW")
	a.JobCancelled()
	if done := a.Request("/x", "GET", ""); done == nil {
		t.Error("a nil API's Request returned nil")
	} else {
		done(200)
	}
}

// TestWorker: each method lands in its series, and values outside the
// closed sets are counted as "other", never as themselves.
func TestWorker(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := NewWorker(reg)
	w.Attempts("AI_PREVIEW").Started()
	w.Attempts("NO_SUCH_TYPE").Started()
	w.Attempts("AI_PREVIEW").Ended(OutcomeCompleted, "", 20*time.Millisecond)
	w.Attempts("AI_PREVIEW").Ended(OutcomeRetried, ErrorThrottled, time.Second)
	w.Attempts("RISK_ANALYSIS").Ended("exploded", "disk on fire", time.Second)
	w.Attempts("AI_PREVIEW").Pickup(5 * time.Millisecond)
	w.Attempts("AI_PREVIEW").Pickup(-time.Second) // clocks disagree: counted as 0
	w.Rescued(2, 1)
	w.Rescued(0, 0)
	w.ParseKilled(KillMemory)
	w.ParseKilled("gremlins")
	w.SetInFlight(3)

	mustValue(t, reg, "jobsd_attempts_started_total", map[string]string{"type": "AI_PREVIEW"}, 1)
	mustValue(t, reg, "jobsd_attempts_started_total", map[string]string{"type": Other}, 1)
	mustValue(t, reg, "jobsd_attempts_started_total", map[string]string{"type": "PARSE_DOCUMENT"}, 0)
	mustValue(t, reg, "jobsd_attempts_total", map[string]string{"type": "AI_PREVIEW", "outcome": "completed", "error_class": "none"}, 1)
	mustValue(t, reg, "jobsd_attempts_total", map[string]string{"type": "AI_PREVIEW", "outcome": "retried", "error_class": "throttled"}, 1)
	mustValue(t, reg, "jobsd_attempts_total", map[string]string{"type": "RISK_ANALYSIS", "outcome": Other, "error_class": Other}, 1)
	mustValue(t, reg, "jobsd_attempt_duration_seconds", map[string]string{"type": "AI_PREVIEW"}, 2)
	mustValue(t, reg, "jobsd_pickup_latency_seconds", map[string]string{"type": "AI_PREVIEW"}, 2)
	mustValue(t, reg, "jobsd_rescues_total", map[string]string{"result": "retried"}, 2)
	mustValue(t, reg, "jobsd_rescues_total", map[string]string{"result": "failed"}, 1)
	mustValue(t, reg, "jobsd_parse_kills_total", map[string]string{"reason": "memory"}, 1)
	mustValue(t, reg, "jobsd_parse_kills_total", map[string]string{"reason": Other}, 1)
	mustValue(t, reg, "jobsd_parse_kills_total", map[string]string{"reason": "cpu"}, 0)
	mustValue(t, reg, "jobsd_worker_jobs_in_flight", nil, 3)
	for _, v := range []string{"exploded", "disk on fire", "gremlins", "NO_SUCH_TYPE"} {
		if labelValues(t, reg)[v] {
			t.Errorf("label value %q was exported", v)
		}
	}
}

func labelValues(t *testing.T, reg prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				out[lp.GetValue()] = true
			}
		}
	}
	return out
}

func TestErrorClassOf(t *testing.T) {
	tests := []struct {
		name, message, want string
	}{
		{"none", "", ErrorNone},
		{"bedrock throttling", "Bedrock API error: ThrottlingException - Rate exceeded", ErrorThrottled},
		{"openai 429", "Model API error: 429 - Too Many Requests", ErrorThrottled},
		{"bedrock other", "Bedrock API error: ValidationException - bad", ErrorModelAPI},
		{"openai 500", "Model API error: 500 - oops", ErrorModelAPI},
		{"invalid output", "Invalid model output: not JSON", ErrorInvalidOutput},
		{"invalid input", `Invalid input: field "text" is required`, ErrorInvalidInput},
		{"reference", "Referenced job 550e8400-e29b-41d4-a716-446655440000 not found", ErrorReference},
		{"timeout", "Job attempt timed out", ErrorTimeout},
		{"cancelled", "Cancelled by user", ErrorCancelled},
		{"lost", "Worker lost while processing the job", ErrorLost},
		{"internal", "Internal error while processing the job", ErrorInternal},
		{"unknown", "pq: connection refused to 10.0.0.1", Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorClassOf(tt.message); got != tt.want {
				t.Errorf("ErrorClassOf(%q) = %q, want %q", tt.message, got, tt.want)
			}
			if got := ErrorClass(ErrorClassOf(tt.message)); got != tt.want {
				t.Errorf("ErrorClass(%q) = %q: a class from ErrorClassOf is not in the set", tt.want, got)
			}
		})
	}
	if got := ErrorClass("user alice"); got != Other {
		t.Errorf(`ErrorClass("user alice") = %q, want other`, got)
	}
}

// TestListen: /healthz answers while the process runs, /readyz follows the
// readiness function, /metrics serves the registry.
func TestListen(t *testing.T) {
	var ready atomic.Bool
	srv, err := Listen("127.0.0.1:0", NewRegistry(), ready.Load, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	base := "http://" + srv.Addr()
	if srv.URL() != base+"/metrics" {
		t.Errorf("URL() = %q", srv.URL())
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d, want 200", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "go_goroutines ") || !strings.Contains(body, "process_start_time_seconds ") {
		t.Errorf("/metrics = %d without the runtime and process series:\n%.500s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ = %d: the listener serves more than it should", code)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestQueueCollector reads the queue from a real database: gauges for every
// status and type, the oldest PENDING age, one query per TTL however many
// scrapes, and no gauges (but a counted error) when the database is gone.
func TestQueueCollector(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	var queries atomic.Int32
	var ttl atomic.Int64
	ttl.Store(int64(time.Hour))
	registerQueue(reg, func(ctx context.Context) (store.QueueStats, error) {
		queries.Add(1)
		return st.QueueStats(ctx)
	}, quiet, func() time.Duration { return time.Duration(ttl.Load()) })

	create := func() {
		t.Helper()
		if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	create()
	pending := map[string]string{"status": "PENDING", "type": "AI_PREVIEW"}
	mustValue(t, reg, "jobsd_jobs", pending, 1)
	mustValue(t, reg, "jobsd_jobs", map[string]string{"status": "PROCESSING", "type": "REPORT_GENERATION"}, 0)
	mustValue(t, reg, "jobsd_queue_stats_capped", nil, 0)
	mustValue(t, reg, "jobsd_workers", nil, 0)
	if age, ok := value(t, reg, "jobsd_oldest_pending_age_seconds", nil); !ok || age < 0 || age > 60 {
		t.Errorf("oldest pending age = %v, %v", age, ok)
	}

	create()
	mustValue(t, reg, "jobsd_jobs", pending, 1) // cached
	mustValue(t, reg, "jobsd_jobs", pending, 1)
	if n := queries.Load(); n != 1 {
		t.Errorf("%d queries for six scrapes within the TTL, want 1", n)
	}
	ttl.Store(0)
	mustValue(t, reg, "jobsd_jobs", pending, 2)

	st.Close()
	if _, ok := value(t, reg, "jobsd_jobs", pending); ok {
		t.Error("queue gauges exported while the database is unreachable")
	}
	if n, _ := value(t, reg, "jobsd_queue_stats_errors_total", nil); n < 1 {
		t.Errorf("jobsd_queue_stats_errors_total = %v after a failed reading", n)
	}
}
