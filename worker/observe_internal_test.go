package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	w     *Worker
	ctx   context.Context
	claim store.Claimed
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
	return &bookkeeping{w: w, ctx: tb.Context(), claim: store.Claimed{
		ID: uuid.New(), UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`),
		Attempts: 1, MaxAttempts: 3, Lease: uuid.New(), CreatedAt: time.Now(),
	}}
}

// attempt starts one attempt, ends it as completed and writes it as written.
func (b *bookkeeping) attempt() {
	w := b.w
	w.start(b.ctx, b.claim)
	a := <-w.tasks
	e := w.end(a, json.RawMessage(`{}`), nil, false)
	w.mu.Lock()
	a.state = stateEnding
	w.mu.Unlock()
	w.freeSlot(a)
	w.ended(e, true, nil)
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
			for b.Loop() {
				k.attempt()
			}
		})
	}
}
