// Package tracing turns on OpenTelemetry traces when the standard OTEL_*
// variables ask for them, and gives the instrumented packages (impl, store,
// worker, model) the little they share: whether tracing is on, their
// tracer, how a span ends, and the W3C trace context a job keeps.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Off, every instrumented call
// costs one atomic load: the packages ask Enabled before they build a span
// or its attributes, so a process without tracing allocates nothing for it.
// On, spans go to the OTLP/HTTP exporter, which reads the rest of the
// OTEL_EXPORTER_OTLP_* variables itself, through a batching processor; the
// SDK reads the sampler (OTEL_TRACES_SAMPLER) and the resource
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// provider is the installed tracer provider; nil while tracing is off.
var provider atomic.Pointer[providerBox]

type providerBox struct {
	tp trace.TracerProvider
	// sampling is tp's sampler when jobsd built tp (Setup), so that its
	// tracers decide before they build a span (decide.go); nil otherwise.
	sampling *sampling
	// tracers caches tp's tracer per scope: the SDK looks one up under a
	// mutex, and the hot paths ask for theirs on every span.
	tracers sync.Map // scope -> trace.Tracer
}

// Enabled reports whether spans are being made. Instrumented code checks it
// before anything else, so that tracing costs nothing while it is off.
func Enabled() bool { return provider.Load() != nil }

// Tracer returns the installed provider's tracer for an instrumentation
// scope (the instrumented package's import path), or a no-op tracer while
// tracing is off.
func Tracer(scope string) trace.Tracer {
	if b := provider.Load(); b != nil {
		return b.tracer(scope)
	}
	return noop.NewTracerProvider().Tracer(scope)
}

// tracer is b's tracer for scope, made once.
func (b *providerBox) tracer(scope string) trace.Tracer {
	if t, ok := b.tracers.Load(scope); ok {
		return t.(trace.Tracer)
	}
	t := b.tp.Tracer(scope)
	if b.sampling != nil {
		t = &decidingTracer{sdk: t, sampling: *b.sampling}
	}
	cached, _ := b.tracers.LoadOrStore(scope, t)
	return cached.(trace.Tracer)
}

// A Scope is an instrumentation scope (the instrumented package's import
// path) whose tracer a hot path asks for on every span. It keeps the
// tracer of the provider installed last: asking costs two atomic loads,
// where Tracer looks the scope up in a map (a worker at a backlog asks for
// its attempt tracer thousands of times a second; the lookup was ~80 ns of
// the ~500 ns that tracing at 1% added to an attempt).
type Scope struct {
	name string
	last atomic.Pointer[scopeTracer]
}

type scopeTracer struct {
	box    *providerBox
	tracer trace.Tracer
}

// NewScope returns the scope called name.
func NewScope(name string) *Scope { return &Scope{name: name} }

// Tracer is Tracer(name) for the provider installed now.
func (s *Scope) Tracer() trace.Tracer {
	b := provider.Load()
	if b == nil {
		return Tracer(s.name)
	}
	if l := s.last.Load(); l != nil && l.box == b {
		return l.tracer
	}
	t := b.tracer(s.name)
	s.last.Store(&scopeTracer{box: b, tracer: t})
	return t
}

// Configured reports whether the environment asks for traces: an OTLP
// endpoint is set (for every signal or for traces), and neither
// OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns them off.
func Configured(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup starts exporting traces when the environment asks for them (see
// Configured) and returns the function that flushes and stops the export;
// otherwise it changes nothing and returns a shutdown that does nothing.
// serviceName is the service.name resource attribute unless
// OTEL_SERVICE_NAME says otherwise. Export errors are logged on log.
func Setup(ctx context.Context, serviceName string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	if !Configured(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("start the OTLP trace exporter: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the default name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	}
	sampler, err := samplerFromEnv(os.Getenv)
	if err != nil && log != nil {
		log.Warn("tracing", "err", err)
	}
	tp := newProvider(sampler.sampler, sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	restore := use(tp, &sampler)
	return func(ctx context.Context) error {
		restore()
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	}, nil
}

// Use installs tp as the tracer provider of jobsd's instrumentation and as
// OpenTelemetry's global one, with W3C trace context (and baggage)
// propagation, and returns the function that turns tracing off again.
// Tests call it with an SDK provider and an in-memory exporter.
func Use(tp trace.TracerProvider) (restore func()) { return use(tp, nil) }

// newProvider is the SDK's tracer provider with sampler, whose tracers
// (installed by use with the same sampler) decide before they build a span.
func newProvider(sampler sdktrace.Sampler, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append(opts, sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(idGenerator{}))...)
}

// use is Use; a non-nil s must hold tp's own sampler (newProvider).
func use(tp trace.TracerProvider, s *sampling) (restore func()) {
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	provider.Store(&providerBox{tp: tp, sampling: s})
	return func() {
		provider.Store(nil)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	}
}

// propagator reads and writes W3C traceparent/tracestate and baggage.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Propagator is the W3C propagator that incoming requests are read with.
func Propagator() propagation.TextMapPropagator { return propagator }

// End ends span (nil: tracing was off), marking it failed with err.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		Fail(span, err)
	}
	span.End()
}

// Fail marks span as failed with err (its text and an error.type).
func Fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorType(err))
}

// TraceID is the trace id of the span in ctx, for log lines, when that span
// is sampled (recorded and exported, so the id leads somewhere); ""
// otherwise.
func TraceID(ctx context.Context) string {
	if !Enabled() {
		return ""
	}
	return SpanTraceID(trace.SpanFromContext(ctx))
}

// SpanTraceID is span's trace id when it is sampled; "" otherwise (also for
// a nil span). Unlike IsRecording, it still answers once the span ended.
func SpanTraceID(span trace.Span) string {
	if span == nil {
		return ""
	}
	sc := span.SpanContext()
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// Parent is the W3C traceparent of the sampled span in ctx ("00-<trace
// id>-<span id>-01"), which a job keeps so that its attempts can link back
// to the request that created it; "" when ctx holds no sampled span.
func Parent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// ParseParent reads what Parent wrote back into a (remote) span context;
// an empty or malformed text gives an invalid one.
func ParseParent(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}
