package store

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/tracing"
)

// tracerScope names the store's spans' instrumentation scope.
const tracerScope = "github.com/jobsd/jobsd/store"

// The store's span names: one per operation, whatever its statements.
const (
	spanCreate    = "store.Create"
	spanGetBatch  = "store.GetBatch"
	spanList      = "store.List"
	spanClaim     = "store.Claim"
	spanFinish    = "store.Finish"
	spanHeartbeat = "store.Heartbeat"
	spanRescue    = "store.Rescue"
	spanCancel    = "store.Cancel"
)

// startSpan starts a client span for one store operation, a child of the
// span in ctx; with tracing off it returns ctx and a nil span at the cost
// of one atomic load (End takes a nil span). batch > 0 is recorded as the
// operation's batch size.
func startSpan(ctx context.Context, name, op string, batch int) (context.Context, trace.Span) {
	if !tracing.Enabled() {
		return ctx, nil
	}
	return startSpanOn(ctx, name, op, batch)
}

func startSpanOn(ctx context.Context, name, op string, batch int, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, semconv.DBSystemNamePostgreSQL, semconv.DBCollectionName("jobs"), semconv.DBOperationName(op))
	if batch > 0 {
		attrs = append(attrs, semconv.DBOperationBatchSize(batch))
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return tracing.Tracer(tracerScope).Start(ctx, name, opts...)
}

// readLink is what a Get remembers of its caller's span, for the batch
// that serves it to link to: the zero value while tracing is off.
func readLink(ctx context.Context) trace.SpanContext {
	if !tracing.Enabled() {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(ctx)
}

// startBatchSpan starts the one span of a batched read, linked to the span
// of every request it serves: the batch belongs to none of their traces,
// so it is a root of its own. No request it serves is sampled: no span.
func startBatchSpan(batch []*pendingRead) trace.Span {
	if !tracing.Enabled() {
		return nil
	}
	var links []trace.Link
	for _, r := range batch {
		if r.caller.IsSampled() {
			links = append(links, trace.Link{SpanContext: r.caller})
		}
	}
	if len(links) == 0 {
		return nil
	}
	_, span := startSpanOn(context.Background(), spanGetBatch, "SELECT", len(batch), trace.WithNewRoot(), trace.WithLinks(links...))
	return span
}

// withJobID records the job an operation is about on its span.
func withJobID(span trace.Span, id string) {
	if span != nil {
		span.SetAttributes(attribute.String("jobsd.job.id", id))
	}
}

// endSpan ends a store span (nil: tracing off), marking it failed unless
// err is an answer rather than a fault: a missing job or a reused key.
func endSpan(span trace.Span, err error) {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrIdempotencyConflict) {
		err = nil
	}
	tracing.End(span, err)
}

// traceParent is the W3C trace context a new job keeps (the creating
// request's span, when it is sampled) as a nullable column value.
func traceParent(ctx context.Context) any {
	if !tracing.Enabled() {
		return nil
	}
	if p := tracing.Parent(ctx); p != "" {
		return p
	}
	return nil
}

// spanStart is when an operation began whose span is made afterwards, if
// at all (see spanIfWorthIt); zero while tracing is off.
func spanStart() time.Time {
	if !tracing.Enabled() {
		return time.Time{}
	}
	return time.Now()
}

// spanIfWorthIt makes, after the fact, the span of a polling operation
// that began at start: only when it found n > 0 rows or failed. An idle
// worker claims every couple of seconds and looks for expired leases
// every few; a span for each of those finds-nothing would bury the
// traces of real work.
func spanIfWorthIt(ctx context.Context, name, op string, n int, start time.Time, err error) {
	if start.IsZero() || (n == 0 && err == nil) || !tracing.Enabled() {
		return
	}
	_, span := startSpanOn(ctx, name, op, n, trace.WithTimestamp(start))
	endSpan(span, err)
}
