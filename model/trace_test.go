package model

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/jobsd/jobsd/tracing"
	"github.com/jobsd/jobsd/tracing/tracingtest"
)

// TestModelSpan: a model call is a client span "chat <model>", a child of
// the span in its context, with the GenAI attributes and token usage; the
// request to an OpenAI-compatible server carries its W3C trace context; a
// failure records the provider's error code.
func TestModelSpan(t *testing.T) {
	exp := tracingtest.Record(t)
	var traceparent string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparent = r.Header.Get("traceparent")
		if status != http.StatusOK {
			http.Error(w, `{"error":{"message":"slow down"}}`, status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":3}}`))
	}))
	defer srv.Close()
	p, err := NewOpenAI(OpenAIConfig{BaseURL: srv.URL + "/v1", DefaultModelID: "llama3.2", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}

	ctx, attempt := tracing.Tracer("test").Start(context.Background(), "process AI_PREVIEW")
	if _, err := p.Converse(ctx, Request{Prompt: "question"}); err != nil {
		t.Fatal(err)
	}
	status = http.StatusTooManyRequests
	if _, err := p.Converse(ctx, Request{Prompt: "question", ModelID: "other"}); err == nil {
		t.Fatal("a 429 was not an error")
	}
	attempt.End()

	ok, failed := tracingtest.Named(exp, "chat llama3.2"), tracingtest.Named(exp, "chat other")
	if len(ok) != 1 || len(failed) != 1 {
		t.Fatalf("spans: %d chat llama3.2, %d chat other; want 1 each", len(ok), len(failed))
	}
	for _, s := range []struct {
		name  string
		attrs map[string]string
	}{
		{"ok", map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "llama3.2", "gen_ai.usage.input_tokens": "9", "gen_ai.usage.output_tokens": "3"}},
		{"failed", map[string]string{"gen_ai.request.model": "other", "error.type": "http_429"}},
	} {
		span := ok[0]
		if s.name == "failed" {
			span = failed[0]
		}
		if span.Parent.SpanID() != attempt.SpanContext().SpanID() {
			t.Errorf("%s: not a child of the attempt span", s.name)
		}
		for k, want := range s.attrs {
			if got, _ := tracingtest.Attr(span, k); got != want {
				t.Errorf("%s: %s = %q, want %q", s.name, k, got, want)
			}
		}
	}
	if failed[0].Status.Code != codes.Error {
		t.Errorf("failed call's status %v, want Error", failed[0].Status.Code)
	}
	if sc := tracing.ParseParent(traceparent); sc.TraceID() != attempt.SpanContext().TraceID() || sc.SpanID() != failed[0].SpanContext.SpanID() {
		t.Errorf("the model server got traceparent %q, not the call's span", traceparent)
	}
}

// TestModelSpanOff: with tracing off a call makes no span and sends no
// trace context.
func TestModelSpanOff(t *testing.T) {
	var traceparent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparent = r.Header.Get("traceparent")
		_, _ = w.Write([]byte(`{"choices":[{"message":{"content":"hi"}}]}`))
	}))
	defer srv.Close()
	p, _ := NewOpenAI(OpenAIConfig{BaseURL: srv.URL, DefaultModelID: "m", HTTPClient: srv.Client()})
	if _, err := p.Converse(context.Background(), Request{Prompt: "q"}); err != nil {
		t.Fatal(err)
	}
	if tracing.Enabled() || traceparent != "" {
		t.Errorf("tracing on (%v) or a traceparent sent (%q) without Setup", tracing.Enabled(), traceparent)
	}
}
