package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
	"github.com/jobsd/jobsd/tracing/tracingtest"
)

// requestSpan stands for the span of an API request.
func requestSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return tracing.Tracer("test").Start(ctx, name)
}

// TestBatchedReadSpan: a batched read is one span, a root of its own,
// linked to the span of every request it serves.
func TestBatchedReadSpan(t *testing.T) {
	exp := tracingtest.Record(t)
	ctx := t.Context()
	st := oneSlotStore(t)
	var ids []uuid.UUID
	for range 6 {
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	callers := make([]trace.SpanContext, len(ids))
	get := func(i int) {
		rctx, span := requestSpan(ctx, "request")
		defer span.End()
		callers[i] = span.SpanContext()
		if _, err := st.Get(rctx, store.OwnedBy("alice"), ids[i]); err != nil {
			t.Error(err)
		}
	}

	// As in TestBatchedReads: the first Get holds the only slot while the
	// others queue, and they leave together.
	tx := lockJobs(t, st)
	before := st.Gets()
	var wg sync.WaitGroup
	wg.Go(func() { get(0) })
	eventually.True(t, 5*time.Second, "the first Get's statement sent", func() bool { return st.Gets() == before+1 })
	for i := 1; i < len(ids); i++ {
		wg.Go(func() { get(i) })
	}
	eventually.True(t, 5*time.Second, "the other Gets queued", func() bool { return st.QueuedReads() == len(ids)-1 })
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	batches := tracingtest.Named(exp, "store.GetBatch")
	if len(batches) != 2 {
		t.Fatalf("%d store.GetBatch spans, want 2 (the first Get alone, then the rest together)", len(batches))
	}
	shared := batches[0]
	if len(batches[1].Links) > len(shared.Links) {
		shared = batches[1]
	}
	if len(shared.Links) != len(ids)-1 {
		t.Errorf("the shared batch has %d links, want %d", len(shared.Links), len(ids)-1)
	}
	for i := 1; i < len(ids); i++ {
		if !tracingtest.Linked(shared, callers[i]) {
			t.Errorf("the shared batch does not link to request %d", i)
		}
	}
	for _, b := range batches {
		if b.Parent.IsValid() {
			t.Errorf("a batch span has a parent (%s): it serves many traces, so it should be a root", b.Parent.SpanID())
		}
		if got, _ := tracingtest.Attr(b, "db.system.name"); got != "postgresql" {
			t.Errorf("db.system.name = %q", got)
		}
	}
	if got, _ := tracingtest.Attr(shared, "db.operation.batch.size"); got != "5" {
		t.Errorf("db.operation.batch.size = %q, want 5", got)
	}
}

// TestTraceContextKept: a job created under a sampled span keeps that
// span's W3C trace context, and its claim returns it; a job created
// untraced, or under a span that is not sampled, keeps none.
func TestTraceContextKept(t *testing.T) {
	exp := tracingtest.Record(t)
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	create := func(ctx context.Context) uuid.UUID {
		t.Helper()
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	rctx, span := requestSpan(ctx, "request")
	traced := create(rctx)
	span.End()
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: span.SpanContext().TraceID(), SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, Remote: true,
	})
	dropped := create(trace.ContextWithSpanContext(ctx, unsampled))
	plain := create(ctx)

	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 10, Lease: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]string{}
	for _, c := range claimed {
		got[c.ID] = c.TraceContext
	}
	if sc := tracing.ParseParent(got[traced]); sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsSampled() {
		t.Errorf("traced job's trace context %q does not name the creating span %s", got[traced], span.SpanContext().SpanID())
	}
	if got[dropped] != "" || got[plain] != "" {
		t.Errorf("untraced jobs keep trace contexts: unsampled %q, none %q", got[dropped], got[plain])
	}

	creates := tracingtest.Named(exp, "store.Create")
	if len(creates) == 0 || creates[0].Parent.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("store.Create is not a child of the request's span: %+v", creates)
	}
	if id, _ := tracingtest.Attr(creates[0], "jobsd.job.id"); id != traced.String() {
		t.Errorf("store.Create's jobsd.job.id = %q, want %s", id, traced)
	}
	// An empty claim, as an idle worker makes every few seconds: no span.
	if more, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 10, Lease: 30 * time.Second}); err != nil || len(more) != 0 {
		t.Fatalf("second claim: %d jobs, %v", len(more), err)
	}
	claims := tracingtest.Named(exp, "store.Claim")
	if len(claims) != 1 {
		t.Fatalf("%d store.Claim spans, want 1: a claim that finds nothing makes none", len(claims))
	}
	if n, _ := tracingtest.Attr(claims[0], "db.operation.batch.size"); n != "3" {
		t.Errorf("store.Claim's db.operation.batch.size = %q, want 3", n)
	}
}
