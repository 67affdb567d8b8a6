package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
	"github.com/jobsd/jobsd/tracing/tracingtest"
	"github.com/jobsd/jobsd/worker"
)

// TestAttemptSpans: each attempt is one span, "process <TYPE>", that
// records its outcome: a retried and a failed attempt are errors, a
// completed one is not; the job created under a traced request links every
// attempt to that request's span.
func TestAttemptSpans(t *testing.T) {
	exp := tracingtest.Record(t)
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if j.Attempt == 1 {
			return nil, errRetryable
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	rctx, request := tracing.Tracer("test").Start(t.Context(), "POST /api/jobs")
	j, _, err := b.st.Create(rctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`), MaxAttempts: 3})
	request.End()
	if err != nil {
		t.Fatal(err)
	}
	b.start(t)
	b.waitFor(t, j.ID, "completed", terminal)

	var attempts tracetest.SpanStubs
	eventually.True(t, 10*time.Second, "two attempt spans ended", func() bool {
		attempts = tracingtest.Named(exp, "process AI_PREVIEW")
		return len(attempts) >= 2
	})
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2", len(attempts))
	}
	for i, want := range []struct {
		outcome string
		status  codes.Code
	}{{"retry", codes.Error}, {"completed", codes.Unset}} {
		a := attempts[i]
		if got, _ := tracingtest.Attr(a, "jobsd.attempt.outcome"); got != want.outcome || a.Status.Code != want.status {
			t.Errorf("attempt %d: outcome %q status %v, want %q %v", i+1, got, a.Status.Code, want.outcome, want.status)
		}
		if got, _ := tracingtest.Attr(a, "jobsd.attempt"); got != []string{"1", "2"}[i] {
			t.Errorf("attempt %d: jobsd.attempt = %q", i+1, got)
		}
		if !tracingtest.Linked(a, request.SpanContext()) {
			t.Errorf("attempt %d is not linked to the creating request's span", i+1)
		}
	}
}
