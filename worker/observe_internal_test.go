package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
)

// The worker's own bookkeeping of one attempt, without its handler and
// without the store: start (registered, counted, its span started), its
// ending made, ended (unregistered, counted, its span ended). The store's
// statements are per claim and per batch of outcomes, not per attempt;
// what metrics and tracing add per attempt is all here.

// bookkeeping is a worker whose attempts are started and ended by hand.
// Its store is never called.
type bookkeeping struct {
	w      *Worker
	ctx    context.Context
	claims []store.Claimed // one attempt's
}

func newBookkeeping(tb testing.TB, m *metrics.Worker) *bookkeeping {
	tb.Helper()
	w, err := New(Config{
		Store:       &store.Store{},
		Handlers:    map[job.Type]Handler{job.TypeAIPreview: func(context.Context, Attempt) (json.RawMessage, error) { return nil, nil }},
		Concurrency: 1,
		Metrics:     m,
		Log:         slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), // as deployed
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &bookkeeping{w: w, ctx: tb.Context(), claims: []store.Claimed{{
		ID: uuid.New(), UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`),
		Attempts: 1, MaxAttempts: 3, Lease: uuid.New(), CreatedAt: time.Now(),
	}}}
}

// attempt starts one attempt, ends it as completed and writes it as written.
func (b *bookkeeping) attempt() {
	w := b.w
	w.startAll(b.ctx, b.claims)
	a := <-w.tasks
	e := w.end(a, json.RawMessage(`{}`), nil, false)
	w.mu.Lock()
	a.state = stateEnding
	w.mu.Unlock()
	w.freeSlot(a)
	w.ended(e, true, nil, time.Now())
	w.setInFlight()
	select { // ended pokes the claim loop; none runs here
	case <-w.done:
	default:
	}
}

// sampledAt turns tracing on as the README recommends for production
// (parentbased_traceidratio), at ratio, exporting over OTLP/HTTP to a sink
// that drops everything, until the test ends.
func sampledAt(tb testing.TB, ratio string) {
	tb.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	tb.Cleanup(sink.Close)
	tb.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
	tb.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	tb.Setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
	shutdown, err := tracing.Setup(context.Background(), "jobsd-test", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = shutdown(context.Background()) })
}

// BenchmarkAttemptBookkeeping is the worker's CPU and allocations per
// attempt outside its handler and the store: with metrics and tracing off,
// with metrics on, with tracing at the README's 1%, and with both (the
// bench's "sampled 1%" contender).
func BenchmarkAttemptBookkeeping(b *testing.B) {
	for _, c := range []struct {
		name           string
		metrics, trace bool
	}{{"off", false, false}, {"metrics", true, false}, {"traces 1%", false, true}, {"metrics and traces 1%", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			var m *metrics.Worker
			if c.metrics {
				m = metrics.NewWorker(metrics.NewRegistry())
			}
			if c.trace {
				sampledAt(b, "0.01")
			}
			k := newBookkeeping(b, m)
			b.ReportAllocs()
			cpu := processCPU(b)
			for b.Loop() {
				k.attempt()
			}
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time this process has used (its garbage collection
// included): on shared cores, steadier than the time that passed.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAttemptFitsItsSizeClass: an attempt is allocated for every job; at
// 257 bytes it would take a 288-byte block.
func TestAttemptFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(attempt{}); size > 256 {
		t.Errorf("an attempt is %d bytes: more than the allocator's 256-byte class", size)
	}
}

// TestObservedAttemptAllocations: metrics on and an attempt whose span the
// sampler drops (99 in 100 at the README's 1%) cost one allocation more
// than neither: the dropped span with its context. The metrics allocate
// nothing per attempt.
func TestObservedAttemptAllocations(t *testing.T) {
	off := testing.AllocsPerRun(2000, newBookkeeping(t, nil).attempt)
	metricsOnly := testing.AllocsPerRun(2000, newBookkeeping(t, metrics.NewWorker(metrics.NewRegistry())).attempt)
	sampledAt(t, "0")
	both := testing.AllocsPerRun(2000, newBookkeeping(t, metrics.NewWorker(metrics.NewRegistry())).attempt)
	t.Logf("allocations per attempt: %v off, %v with metrics, %v with metrics and a dropped span", off, metricsOnly, both)
	if metricsOnly != off {
		t.Errorf("metrics on: %v allocations per attempt, off: %v; want the same", metricsOnly, off)
	}
	if both > off+1 {
		t.Errorf("metrics on and the span dropped: %v allocations per attempt, off: %v; want at most one more", both, off)
	}
}
