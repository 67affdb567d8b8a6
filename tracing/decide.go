package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// Deciding before building: at the sampling the README recommends (1% of
// traces), 99 of 100 of the worker's attempt spans are not sampled, and
// the SDK's Start still builds each of them (its configuration, ids, a
// span, two contexts) before its sampler drops it: about 4% of the
// worker's CPU in a burn-down. jobsd builds the sampler itself, from the
// same OTEL_TRACES_SAMPLER variables the SDK would read, and asks it
// first; only a span it samples is started by the SDK, which then asks the
// same sampler about the same trace id and agrees (the samplers named by
// the variables decide by the parent and the trace id alone). A dropped
// span is only its span context: a new span id, in a trace id of its own
// for a root, not sampled, so that its children are dropped too.

// sampling is a sampler, and how it decides a root (a span with no valid
// parent) when that is by the trace id alone.
type sampling struct {
	sampler sdktrace.Sampler
	// root decides a root as sampler would, without the SDK's sampling
	// parameters (a large struct passed through two interfaces: ~130 ns,
	// most of what deciding a dropped attempt span cost); nil: ask
	// sampler.
	root *rootRule
}

// rootRule is how OpenTelemetry's samplers decide a root by its trace id:
// every one, or those whose last 8 bytes, read big-endian and halved, are
// below bound (TraceIDRatioBased's test; bound 0 takes none).
type rootRule struct {
	all   bool
	bound uint64
}

// sampled is the rule's decision for a root in trace tid.
func (r *rootRule) sampled(tid trace.TraceID) bool {
	return r.all || binary.BigEndian.Uint64(tid[8:16])>>1 < r.bound
}

// ratioRule is TraceIDRatioBased(ratio)'s rule.
func ratioRule(ratio float64) *rootRule {
	switch {
	case ratio >= 1:
		return &rootRule{all: true}
	case ratio <= 0:
		return &rootRule{}
	}
	return &rootRule{bound: uint64(ratio * (1 << 63))}
}

// samplerFromEnv is the sampler that OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, read as the SDK reads them: unset is the
// SDK's default (parentbased_always_on); a ratio that is missing is 1, one
// that is malformed or out of [0, 1] is 1 with an error; a name the SDK
// does not know is the default with an error. Every one of them decides a
// root by its trace id alone, and says how (sampling.root).
func samplerFromEnv(getenv func(string) string) (sampling, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	all, none := &rootRule{all: true}, &rootRule{}
	switch name {
	case "", "parentbased_always_on":
		return sampling{sdktrace.ParentBased(sdktrace.AlwaysSample()), all}, nil
	case "always_on":
		return sampling{sdktrace.AlwaysSample(), all}, nil
	case "always_off":
		return sampling{sdktrace.NeverSample(), none}, nil
	case "parentbased_always_off":
		return sampling{sdktrace.ParentBased(sdktrace.NeverSample()), none}, nil
	case "traceidratio":
		ratio, err := traceIDRatio(arg)
		return sampling{sdktrace.TraceIDRatioBased(ratio), ratioRule(ratio)}, err
	case "parentbased_traceidratio":
		ratio, err := traceIDRatio(arg)
		return sampling{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), ratioRule(ratio)}, err
	}
	return sampling{sdktrace.ParentBased(sdktrace.AlwaysSample()), all},
		fmt.Errorf("OTEL_TRACES_SAMPLER=%q is not a sampler jobsd knows; sampling every trace the caller has not decided on (parentbased_always_on)", name)
}

// traceIDRatio reads OTEL_TRACES_SAMPLER_ARG as a ratio ("": 1).
func traceIDRatio(arg string) (float64, error) {
	if arg == "" {
		return 1, nil
	}
	v, err := strconv.ParseFloat(arg, 64)
	if err != nil || v < 0 || v > 1 {
		return 1, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q is not a ratio between 0 and 1; sampling every trace", arg)
	}
	return v, nil
}

// decidingTracer asks sampler before it lets the SDK's tracer build a span.
// sampler must be the provider's own, and idGenerator its ID generator.
type decidingTracer struct {
	embedded.Tracer
	sdk trace.Tracer
	sampling
}

func (t *decidingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	var parent trace.SpanContext
	parentCtx := context.Background() // a new root has no parent
	if !cfg.NewRoot() {
		parent, parentCtx = trace.SpanContextFromContext(ctx), ctx
	}
	tid := parent.TraceID()
	if !tid.IsValid() {
		tid = newTraceID()
	}
	var state trace.TraceState // a root's: none
	if t.root != nil && !parent.IsValid() {
		if t.root.sampled(tid) {
			return t.startSampled(ctx, parent, tid, name, opts)
		}
	} else {
		res := t.sampler.ShouldSample(sdktrace.SamplingParameters{
			ParentContext: parentCtx, TraceID: tid, Name: name,
			Kind: cfg.SpanKind(), Attributes: cfg.Attributes(), Links: cfg.Links(),
		})
		if res.Decision != sdktrace.Drop {
			return t.startSampled(ctx, parent, tid, name, opts)
		}
		state = res.Tracestate
	}
	return dropped(ctx, parent, tid, state)
}

// dropped is the span the sampler dropped, in trace tid under parent (or
// none), and ctx carrying it.
func dropped(ctx context.Context, parent trace.SpanContext, tid trace.TraceID, state trace.TraceState) (context.Context, trace.Span) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: newSpanID(),
		TraceFlags: parent.TraceFlags() &^ trace.FlagsSampled, TraceState: state,
	})
	if spanKey == nil {
		ctx = trace.ContextWithSpanContext(ctx, sc)
		return ctx, trace.SpanFromContext(ctx)
	}
	d := &droppedSpan{Context: ctx, sc: sc}
	return d, d
}

// StartRoot starts a span of kind that is the root of a trace of its own,
// linked to link when link is valid: the span that
// Tracer().Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(kind),
// trace.WithLinks(...)) starts. When the sampler has a rule for roots (as
// Setup installs it), a root the rule drops is made without those options
// (applying them cost ~70 ns of a dropped attempt span's ~230 ns), and the
// options are built only for a root the rule samples.
func (s *Scope) StartRoot(ctx context.Context, name string, kind trace.SpanKind, link trace.SpanContext) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	tr := s.Tracer()
	if t, ok := tr.(*decidingTracer); ok && t.root != nil {
		tid := newTraceID()
		if !t.root.sampled(tid) {
			return dropped(ctx, trace.SpanContext{}, tid, trace.TraceState{})
		}
		return t.startSampled(ctx, trace.SpanContext{}, tid, name, rootOptions(kind, link))
	}
	return tr.Start(ctx, name, rootOptions(kind, link)...)
}

// rootOptions are StartRoot's options for Start.
func rootOptions(kind trace.SpanKind, link trace.SpanContext) []trace.SpanStartOption {
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(kind)}
	if link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: link}))
	}
	return opts
}

// startSampled has the SDK start the span the sampler took. A root gets
// the trace id the sampler was asked about (idGenerator reads it from the
// context given to the SDK only: the context returned is rebuilt on ctx,
// so that a root started under this span gets an id of its own).
func (t *decidingTracer) startSampled(ctx context.Context, parent trace.SpanContext, tid trace.TraceID, name string, opts []trace.SpanStartOption) (context.Context, trace.Span) {
	if parent.TraceID().IsValid() {
		return t.sdk.Start(ctx, name, opts...)
	}
	_, span := t.sdk.Start(context.WithValue(ctx, rootTraceIDKey{}, tid), name, opts...)
	return trace.ContextWithSpan(ctx, span), span
}

// rootTraceIDKey is the context key of the trace id decided for a root.
type rootTraceIDKey struct{}

// idGenerator is the SDK's random ids, but for a root whose trace id was
// decided on before the SDK was asked to start it.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(rootTraceIDKey{}).(trace.TraceID)
	if !ok {
		tid = newTraceID()
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

// newTraceID and newSpanID are random, valid (not all zero) ids, as the
// SDK makes them.
func newTraceID() trace.TraceID {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid
}

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// droppedSpan is a span the sampler dropped and the context that carries
// it, in one allocation: trace.ContextWithSpanContext makes two (the span,
// and the context value that holds it), and at 1% sampling 99 of 100 of
// the worker's attempts made them. It records nothing, as the span that
// trace.ContextWithSpanContext makes.
type droppedSpan struct {
	context.Context // the parent
	embedded.Span
	sc trace.SpanContext
}

// Value is the span for OpenTelemetry's key, the parent's value otherwise.
func (d *droppedSpan) Value(key any) any {
	if key == spanKey {
		return trace.Span(d)
	}
	return d.Context.Value(key)
}

func (d *droppedSpan) SpanContext() trace.SpanContext          { return d.sc }
func (d *droppedSpan) IsRecording() bool                       { return false }
func (d *droppedSpan) End(...trace.SpanEndOption)              {}
func (d *droppedSpan) AddEvent(string, ...trace.EventOption)   {}
func (d *droppedSpan) AddLink(trace.Link)                      {}
func (d *droppedSpan) RecordError(error, ...trace.EventOption) {}
func (d *droppedSpan) SetStatus(codes.Code, string)            {}
func (d *droppedSpan) SetName(string)                          {}
func (d *droppedSpan) SetAttributes(...attribute.KeyValue)     {}
func (d *droppedSpan) TracerProvider() trace.TracerProvider    { return noop.NewTracerProvider() }
func (d *droppedSpan) String() string                          { return "tracing.droppedSpan" }

// spanKey is the context key under which OpenTelemetry keeps the current
// span (its type is unexported): the key that trace.SpanFromContext asks a
// context for, checked to be the one trace.ContextWithSpan sets. nil if
// either ever changes, and then a dropped span is made as before.
var spanKey = func() any {
	var p keyProbe
	trace.SpanFromContext(&p)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	if p.key == nil {
		return nil
	}
	if v, ok := trace.ContextWithSpanContext(context.Background(), sc).Value(p.key).(trace.Span); !ok || !v.SpanContext().Equal(sc) {
		return nil
	}
	return p.key
}()

// keyProbe is a context that remembers the key it was last asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}
