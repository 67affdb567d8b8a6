package model

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/tracing"
)

// tracerScope is the model calls' instrumentation scope.
var tracerScope = tracing.NewScope("github.com/jobsd/jobsd/model")

// providerLocal is the gen_ai.provider.name of the local provider, which
// the conventions do not know.
var providerLocal = semconv.GenAIProviderNameKey.String("jobsd.local")

// traced runs one model call (do) inside a client span named as the
// GenAI conventions say, "chat <model>", a child of the span in ctx (the
// worker's attempt span): with its provider, model, token usage and, for a
// failure, the provider's error code. With tracing off, or under an
// attempt span that is not sampled, it only calls do: the samplers jobsd
// documents decide by trace id or by the parent, so a child of an unsampled
// span is never sampled either, and starting one cost about a twentieth of
// the worker's CPU at 1% sampling.
func traced(ctx context.Context, provider attribute.KeyValue, modelID string, do func(context.Context) (Response, error)) (Response, error) {
	if !tracing.Enabled() {
		return do(ctx)
	}
	if parent := trace.SpanFromContext(ctx); parent.SpanContext().IsValid() && !parent.IsRecording() {
		return do(ctx)
	}
	ctx, span := tracerScope.Tracer().Start(ctx, "chat "+modelID, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if !span.IsRecording() { // not sampled: no attributes to build
		return do(ctx)
	}
	span.SetAttributes(semconv.GenAIOperationNameChat, provider, semconv.GenAIRequestModel(modelID))
	resp, err := do(ctx)
	if err != nil {
		failSpan(span, err)
		return resp, err
	}
	span.SetAttributes(semconv.GenAIUsageInputTokens(resp.InputTokens), semconv.GenAIUsageOutputTokens(resp.OutputTokens))
	return resp, nil
}

// failSpan records a failed call: a classified *Error by its code and
// message (never the prompt), anything else as it is.
func failSpan(span trace.Span, err error) {
	var me *Error
	if !errors.As(err, &me) {
		tracing.Fail(span, err)
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(me.Code), attribute.Bool("jobsd.model.retryable", me.Retryable))
	span.SetStatus(codes.Error, me.Message)
}
