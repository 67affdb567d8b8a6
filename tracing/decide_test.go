package tracing

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestSamplerFromEnv(t *testing.T) {
	cases := []struct {
		sampler, arg, want string
		wantErr            bool
	}{
		{"", "", "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", false},
		{" ParentBased_TraceIDRatio ", "0.01", "ParentBased{root:TraceIDRatioBased{0.01},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", false},
		{"parentbased_traceidratio", "", "ParentBased{root:TraceIDRatioBased{1},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", false},
		{"traceidratio", "0.5", "TraceIDRatioBased{0.5}", false},
		{"traceidratio", "1.5", "TraceIDRatioBased{1}", true},
		{"traceidratio", "-1", "TraceIDRatioBased{1}", true},
		{"traceidratio", "half", "TraceIDRatioBased{1}", true},
		{"always_on", "", "AlwaysOnSampler", false},
		{"always_off", "", "AlwaysOffSampler", false},
		{"parentbased_always_off", "", "ParentBased{root:AlwaysOffSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", false},
		{"jaeger_remote", "", "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", true},
	}
	for _, c := range cases {
		env := map[string]string{"OTEL_TRACES_SAMPLER": c.sampler, "OTEL_TRACES_SAMPLER_ARG": c.arg}
		s, err := samplerFromEnv(func(k string) string { return env[k] })
		if got := s.sampler.Description(); got != c.want {
			t.Errorf("%q %q: sampler %s, want %s", c.sampler, c.arg, got, c.want)
		}
		if (err != nil) != c.wantErr {
			t.Errorf("%q %q: err %v, want an error: %v", c.sampler, c.arg, err, c.wantErr)
		}
	}
}

// recordSampled turns tracing on as Setup does, with sampler (asked about
// every span: it comes with no rule for roots), keeping the ended spans in
// memory.
func recordSampled(tb testing.TB, sampler sdktrace.Sampler) *tracetest.InMemoryExporter {
	tb.Helper()
	return recordSampling(tb, sampling{sampler: sampler})
}

// recordSampling is recordSampled with a sampler and its rule for roots.
func recordSampling(tb testing.TB, s sampling) *tracetest.InMemoryExporter {
	tb.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := newProvider(s.sampler, sdktrace.WithSyncer(exp))
	restore := use(tp, &s)
	tb.Cleanup(func() {
		restore()
		_ = tp.Shutdown(context.Background())
	})
	return exp
}

// takenByRatio is TraceIDRatioBased's decision for tid.
func takenByRatio(tid trace.TraceID, ratio float64) bool {
	return binary.BigEndian.Uint64(tid[8:16])>>1 < uint64(ratio*(1<<63))
}

// TestDecidedRootsAreSampledOnce: a root is sampled at the configured ratio
// (not its square: the SDK is asked about the trace id decided on), by its
// trace id as the ratio sampler says, and exactly the spans said to be
// sampled are exported.
func TestDecidedRootsAreSampledOnce(t *testing.T) {
	const ratio = 0.25
	t.Run("sampler asked", func(t *testing.T) {
		rootsSampledOnce(t, recordSampled(t, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))), ratio)
	})
	t.Run("rule", func(t *testing.T) {
		rootsSampledOnce(t, recordSampling(t, envSampling(t, "parentbased_traceidratio", "0.25")), ratio)
	})
}

// envSampling is the sampling that OTEL_TRACES_SAMPLER=name and
// OTEL_TRACES_SAMPLER_ARG=arg ask for.
func envSampling(tb testing.TB, name, arg string) sampling {
	tb.Helper()
	env := map[string]string{"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": arg}
	s, err := samplerFromEnv(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestRootRuleIsTheSamplers: for every sampler the environment can name,
// the rule decides a root as the sampler does.
func TestRootRuleIsTheSamplers(t *testing.T) {
	for _, c := range []struct{ name, arg string }{
		{"", ""}, {"always_on", ""}, {"always_off", ""}, {"parentbased_always_off", ""}, {"parentbased_always_on", ""},
		{"traceidratio", "0.5"}, {"parentbased_traceidratio", "0.01"}, {"parentbased_traceidratio", "0.999"},
		{"parentbased_traceidratio", "0"}, {"parentbased_traceidratio", "1"}, {"parentbased_traceidratio", "1e-300"},
	} {
		s := envSampling(t, c.name, c.arg)
		if s.root == nil {
			t.Errorf("%q %q: no rule for roots", c.name, c.arg)
			continue
		}
		sampled := 0
		for i := range 20000 {
			tid := newTraceID()
			if i < 2 { // the ends of the range
				binary.BigEndian.PutUint64(tid[8:], [2]uint64{0, ^uint64(0)}[i])
			}
			res := s.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: tid, Name: "root"})
			if want := res.Decision == sdktrace.RecordAndSample; s.root.sampled(tid) != want {
				t.Fatalf("%q %q: trace %s: rule says sampled %v, the sampler %v", c.name, c.arg, tid, !want, want)
			}
			if s.root.sampled(tid) {
				sampled++
			}
		}
		t.Logf("%q %q: %d of 20000 sampled", c.name, c.arg, sampled)
	}
}

// rootsSampledOnce starts n roots and checks which were sampled and
// exported.
func rootsSampledOnce(t *testing.T, exp *tracetest.InMemoryExporter, ratio float64) {
	t.Helper()
	const n = 4000
	sampled := 0
	for range n {
		_, span := Tracer("test").Start(context.Background(), "root", trace.WithNewRoot())
		sc := span.SpanContext()
		if !sc.IsValid() {
			t.Fatal("a root's span context is not valid")
		}
		if sc.IsSampled() != takenByRatio(sc.TraceID(), ratio) || sc.IsSampled() != span.IsRecording() {
			t.Fatalf("root %s: sampled %v, recording %v; the ratio takes it: %v", sc.TraceID(), sc.IsSampled(), span.IsRecording(), takenByRatio(sc.TraceID(), ratio))
		}
		if sc.IsSampled() {
			sampled++
		}
		span.End()
	}
	if got := len(exp.GetSpans()); got != sampled {
		t.Errorf("%d spans exported, %d sampled", got, sampled)
	}
	// 7 standard deviations either side of n·ratio; ratio² would be 250.
	if sampled < 800 || sampled > 1200 {
		t.Errorf("%d of %d roots sampled at a ratio of %v", sampled, n, ratio)
	}
}

// TestDecidedChildren: a child follows its parent (local or remote), keeps
// its trace id, and a new root under a sampled span starts a trace of its
// own.
func TestDecidedChildren(t *testing.T) {
	exp := recordSampling(t, envSampling(t, "parentbased_traceidratio", "0.5"))
	tr := Tracer("test")
	for range 200 {
		ctx, root := tr.Start(context.Background(), "root")
		_, child := tr.Start(ctx, "child")
		if child.SpanContext().TraceID() != root.SpanContext().TraceID() || child.SpanContext().SpanID() == root.SpanContext().SpanID() {
			t.Fatalf("child %v of root %v: not a new span in the same trace", child.SpanContext(), root.SpanContext())
		}
		if child.SpanContext().IsSampled() != root.SpanContext().IsSampled() {
			t.Fatalf("child sampled %v under a root sampled %v", child.SpanContext().IsSampled(), root.SpanContext().IsSampled())
		}
		_, other := tr.Start(ctx, "other root", trace.WithNewRoot())
		if other.SpanContext().TraceID() == root.SpanContext().TraceID() {
			t.Fatal("a new root under a span shares its trace id")
		}
		other.End()
		child.End()
		root.End()
	}
	for _, s := range exp.GetSpans() {
		if s.Name == "child" && !s.Parent.IsValid() {
			t.Errorf("exported child %s has no parent", s.SpanContext.SpanID())
		}
	}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: flags, Remote: true})
		_, span := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), remote), "server")
		if span.SpanContext().IsSampled() != remote.IsSampled() || span.SpanContext().TraceID() != remote.TraceID() {
			t.Errorf("under a remote parent sampled %v: span %v", remote.IsSampled(), span.SpanContext())
		}
		span.End()
	}
}

// BenchmarkAttemptSpan is the cost of the worker's attempt span (a new
// root, consumer kind, ended at once) at the README's 1% sampling, as the
// SDK builds it, as decided first by the sampler, as decided by the
// sampler's rule for roots (what Setup installs), and as the worker starts
// it (Scope.StartRoot).
func BenchmarkAttemptSpan(b *testing.B) {
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer)}
	run := func(b *testing.B, tr trace.Tracer) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_, span := tr.Start(ctx, "process AI_PREVIEW", opts...)
			span.End()
		}
	}
	b.Run("sdk", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		run(b, tp.Tracer("bench"))
	})
	b.Run("decided", func(b *testing.B) {
		tp := newProvider(sampler, sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		run(b, &decidingTracer{sdk: tp.Tracer("bench"), sampling: sampling{sampler: sampler}})
	})
	b.Run("decided by rule", func(b *testing.B) {
		s := envSampling(b, "parentbased_traceidratio", "0.01")
		tp := newProvider(s.sampler, sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		run(b, &decidingTracer{sdk: tp.Tracer("bench"), sampling: s})
	})
	b.Run("StartRoot by rule", func(b *testing.B) {
		s := envSampling(b, "parentbased_traceidratio", "0.01")
		tp := newProvider(s.sampler, sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		restore := use(tp, &s)
		defer func() { restore(); _ = tp.Shutdown(context.Background()) }()
		scope := NewScope("bench")
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_, span := scope.StartRoot(ctx, "process AI_PREVIEW", trace.SpanKindConsumer, trace.SpanContext{})
			span.End()
		}
	})
}

// TestDroppedSpanInContext: a span the sampler dropped is the span of the
// context it comes with, as OpenTelemetry reads it, not sampled, with ids of
// its own; that context is its parent's in every other way (values,
// cancellation); and a child started under it is dropped too.
func TestDroppedSpanInContext(t *testing.T) {
	if spanKey == nil {
		t.Fatal("OpenTelemetry's current-span key was not found: dropped spans cost two allocations again")
	}
	recordSampling(t, envSampling(t, "parentbased_traceidratio", "0"))
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "kept"))
	ctx, span := Tracer("test").Start(parent, "root", trace.WithNewRoot())
	sc := span.SpanContext()
	if !sc.IsValid() || sc.IsSampled() || span.IsRecording() {
		t.Fatalf("dropped root: span context %v (valid %v, sampled %v), recording %v", sc, sc.IsValid(), sc.IsSampled(), span.IsRecording())
	}
	if got := trace.SpanFromContext(ctx); got != span {
		t.Errorf("SpanFromContext = %v, want the dropped span", got)
	}
	if got := trace.SpanContextFromContext(ctx); !got.Equal(sc) {
		t.Errorf("SpanContextFromContext = %v, want %v", got, sc)
	}
	if got := ctx.Value(key{}); got != "kept" {
		t.Errorf("the parent's value: %v", got)
	}
	child, stopChild := context.WithCancel(ctx)
	defer stopChild()
	_, grandchild := Tracer("test").Start(child, "child")
	if grandchild.SpanContext().TraceID() != sc.TraceID() || grandchild.SpanContext().IsSampled() {
		t.Errorf("child %v of dropped %v: want the same trace, not sampled", grandchild.SpanContext(), sc)
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the parent did not reach a context derived from the dropped span's")
	}
	if ctx.Err() == nil {
		t.Error("the dropped span's context outlived its parent")
	}
	_, other := Tracer("test").Start(ctx, "root", trace.WithNewRoot())
	if other.SpanContext().TraceID() == sc.TraceID() {
		t.Error("two dropped roots share a trace id")
	}
}

// TestDroppedSpanAllocations: a root the sampler drops costs one
// allocation (its span and context together), and asking a scope for its
// tracer none.
func TestDroppedSpanAllocations(t *testing.T) {
	recordSampling(t, envSampling(t, "parentbased_traceidratio", "0"))
	scope := NewScope("test")
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer)}
	ctx := context.Background()
	for name, start := range map[string]func(){
		"Start": func() {
			_, span := scope.Tracer().Start(ctx, "process AI_PREVIEW", opts...)
			span.End()
		},
		"StartRoot": func() {
			_, span := scope.StartRoot(ctx, "process AI_PREVIEW", trace.SpanKindConsumer, trace.SpanContext{})
			span.End()
		},
	} {
		if allocs := testing.AllocsPerRun(1000, start); allocs > 1 {
			t.Errorf("%s: %v allocations per dropped root span, want 1", name, allocs)
		}
	}
}

// TestScopeFollowsTheProvider: a scope's tracer is the installed
// provider's, also after another was installed, and a no-op one while
// tracing is off.
func TestScopeFollowsTheProvider(t *testing.T) {
	scope := NewScope("test")
	if _, span := scope.Tracer().Start(context.Background(), "off"); span.SpanContext().IsValid() {
		t.Fatal("tracing off: the scope's tracer made a span")
	}
	for range 2 {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		restore := Use(tp)
		_, span := scope.Tracer().Start(context.Background(), "on")
		span.End()
		restore()
		if got := len(exp.GetSpans()); got != 1 {
			t.Errorf("%d spans reached the installed provider's exporter, want 1", got)
		}
	}
}

// TestStartRoot: a scope's root is a root of its own under a sampled span,
// of the kind asked, linked to the span given; the same whether the
// sampler's rule for roots decides it (as Setup installs it) or the sampler
// is asked; and a root the rule drops is not sampled, in a trace of its own.
func TestStartRoot(t *testing.T) {
	scope := NewScope("test")
	link := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: trace.FlagsSampled, Remote: true})
	for _, c := range []struct {
		name string
		s    sampling
	}{
		{"rule", envSampling(t, "parentbased_traceidratio", "1")},
		{"sampler asked", sampling{sampler: sdktrace.ParentBased(sdktrace.AlwaysSample())}},
	} {
		t.Run(c.name, func(t *testing.T) {
			exp := recordSampling(t, c.s)
			ctx, parent := scope.Tracer().Start(context.Background(), "request")
			_, span := scope.StartRoot(ctx, "process AI_PREVIEW", trace.SpanKindConsumer, link)
			if !span.IsRecording() || span.SpanContext().TraceID() == parent.SpanContext().TraceID() {
				t.Fatalf("root %v under %v: want a recorded span in a trace of its own", span.SpanContext(), parent.SpanContext())
			}
			_, unlinked := scope.StartRoot(ctx, "unlinked", trace.SpanKindInternal, trace.SpanContext{})
			unlinked.End()
			span.End()
			parent.End()
			got := exp.GetSpans()
			if len(got) != 3 {
				t.Fatalf("%d spans exported, want 3", len(got))
			}
			for _, s := range got {
				switch s.Name {
				case "process AI_PREVIEW":
					if s.Parent.IsValid() || s.SpanKind != trace.SpanKindConsumer || len(s.Links) != 1 || !s.Links[0].SpanContext.Equal(link) {
						t.Errorf("root: parent %v, kind %v, links %v; want no parent, consumer, the link", s.Parent, s.SpanKind, s.Links)
					}
				case "unlinked":
					if s.Parent.IsValid() || s.SpanKind != trace.SpanKindInternal || len(s.Links) != 0 {
						t.Errorf("unlinked root: parent %v, kind %v, links %v", s.Parent, s.SpanKind, s.Links)
					}
				}
			}
		})
	}
	t.Run("dropped by the rule", func(t *testing.T) {
		exp := recordSampling(t, envSampling(t, "parentbased_traceidratio", "0"))
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: trace.FlagsSampled})
		ctx := trace.ContextWithSpanContext(context.Background(), parent)
		ctx, span := scope.StartRoot(ctx, "process AI_PREVIEW", trace.SpanKindConsumer, link)
		sc := span.SpanContext()
		if !sc.IsValid() || sc.IsSampled() || span.IsRecording() || sc.TraceID() == parent.TraceID() || trace.SpanFromContext(ctx) != span {
			t.Errorf("dropped root %v under %v: want valid, not sampled, a trace of its own, in its context", sc, parent)
		}
		span.End()
		if n := len(exp.GetSpans()); n != 0 {
			t.Errorf("%d spans exported", n)
		}
	})
}
