package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
)

// tracerScope is the worker's spans' instrumentation scope.
var tracerScope = tracing.NewScope("github.com/jobsd/jobsd/worker")

// startAttemptSpan starts the span of one attempt, "process <TYPE>": the
// root of a trace of its own (an attempt runs long after the request that
// created the job has ended, and maybe more than once), linked to that
// request's span when the job kept its trace context. The handler's
// context carries it, so a model call is its child.
//
// The attributes are made only for a span that records: at the sampling
// the README recommends (1%), building them for every attempt cost the
// worker more CPU than the sampled spans themselves. (The samplers jobsd
// documents decide by trace id, not by attributes; and the tracer decides
// before it builds the span: tracing/decide.go.)
func startAttemptSpan(ctx context.Context, c store.Claimed, workerID string) (context.Context, trace.Span) {
	ctx, span := tracerScope.StartRoot(ctx, attemptSpanName(c.Type), trace.SpanKindConsumer, tracing.ParseParent(c.TraceContext))
	if span.IsRecording() {
		id := c.ID.String()
		span.SetAttributes(
			semconv.MessagingSystemKey.String("jobsd"),
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(string(c.Type)),
			semconv.MessagingMessageID(id),
			attribute.String("jobsd.job.id", id),
			attribute.Int("jobsd.attempt", c.Attempts),
			attribute.Int("jobsd.max_attempts", c.MaxAttempts),
			attribute.String("jobsd.worker.id", workerID),
		)
	}
	return ctx, span
}

// attemptSpanNames are the attempt spans' names by job type, made once.
var attemptSpanNames = func() map[job.Type]string {
	m := map[job.Type]string{}
	for _, t := range job.Types {
		m[t] = "process " + string(t)
	}
	return m
}()

// attemptSpanName is "process <TYPE>".
func attemptSpanName(t job.Type) string {
	if name, ok := attemptSpanNames[t]; ok {
		return name
	}
	return "process " + string(t)
}

// endAttemptSpan records how the attempt ended and ends its span (nil:
// tracing was off). ok and werr are the outcome write's: an outcome that
// was not written (the lease was lost, or the write failed) is "lost".
func endAttemptSpan(e ending, ok bool, werr error) {
	span := e.a.span
	if span == nil {
		return
	}
	if !span.IsRecording() { // not sampled: nothing to record (an attribute would cost an allocation)
		span.End()
		return
	}
	outcome := string(e.o.Kind)
	if !ok || werr != nil {
		outcome = "lost"
	}
	span.SetAttributes(attribute.String("jobsd.attempt.outcome", outcome))
	switch {
	case werr != nil:
		tracing.Fail(span, werr)
	case e.err != nil && e.o.Kind != store.OutcomeRelease:
		tracing.Fail(span, e.err)
	}
	span.End()
}

// traceArgs are the log arguments naming the attempt's trace: none while
// tracing is off or the attempt's span is not sampled.
func traceArgs(span trace.Span) []any {
	if tid := tracing.SpanTraceID(span); tid != "" {
		return []any{"trace_id", tid}
	}
	return nil
}
