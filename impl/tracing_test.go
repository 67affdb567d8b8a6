package impl_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing/tracingtest"
)

// TestRequestSpans: each request is one server span named by its route
// template, never by its path, with the HTTP attributes of the semantic
// conventions; it continues a caller's W3C trace context, and its log line
// carries the trace and job ids.
func TestRequestSpans(t *testing.T) {
	exp := tracingtest.Record(t)
	var logs bytes.Buffer
	b := setupPoll(t, func(c *impl.Config) { c.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	pending := b.job(t, store.StatusPending)
	missing := uuid.NewString()

	send := func(method, path, body string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+b.token)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		b.e.ServeHTTP(rec, req)
		return rec
	}
	const parentTrace, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if rec := send("GET", "/api/jobs/"+pending, "", "traceparent", "00-"+parentTrace+"-"+parentSpan+"-01"); rec.Code != 200 {
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	if rec := send("GET", "/api/jobs/"+missing, ""); rec.Code != 404 {
		t.Fatalf("poll of a missing job: %d", rec.Code)
	}
	created := send("POST", "/api/jobs", `{"type":"RISK_ANALYSIS","input":{"text":"x"}}`)
	if created.Code != 202 {
		t.Fatalf("create: %d %s", created.Code, created.Body)
	}
	if rec := send("GET", "/no/such/"+missing, ""); rec.Code != 404 {
		t.Fatalf("unmatched: %d", rec.Code)
	}

	spans := exp.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		if strings.Contains(s.Name, pending) || strings.Contains(s.Name, missing) {
			t.Errorf("span name %q holds an id", s.Name)
		}
	}
	polls := byName["GET /api/jobs/:id"]
	if len(polls) != 2 {
		t.Fatalf("%d spans named GET /api/jobs/:id, want 2; spans: %v", len(polls), names(spans))
	}
	tests := []struct {
		name   string
		span   tracetest.SpanStub
		attrs  map[string]string
		status codes.Code
	}{
		{"poll", polls[0], map[string]string{"http.request.method": "GET", "http.route": "/api/jobs/:id", "http.response.status_code": "200", "jobsd.job.id": pending}, codes.Unset},
		{"poll of a missing job", polls[1], map[string]string{"http.route": "/api/jobs/:id", "http.response.status_code": "404"}, codes.Unset},
		{"create", one(t, byName, "POST /api/jobs"), map[string]string{"http.request.method": "POST", "http.route": "/api/jobs", "http.response.status_code": "202"}, codes.Unset},
		{"unmatched", one(t, byName, "GET"), map[string]string{"http.request.method": "GET", "http.response.status_code": "404"}, codes.Unset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.span.SpanKind != trace.SpanKindServer {
				t.Errorf("kind %v, want server", tt.span.SpanKind)
			}
			for k, want := range tt.attrs {
				if got, _ := tracingtest.Attr(tt.span, k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tt.span.Status.Code != tt.status {
				t.Errorf("status %v, want %v (a 4xx is not the server's error)", tt.span.Status.Code, tt.status)
			}
		})
	}
	if _, ok := tracingtest.Attr(tests[3].span, "http.route"); ok {
		t.Error("an unmatched request has an http.route")
	}
	poll := polls[0]
	if poll.SpanContext.TraceID().String() != parentTrace || poll.Parent.SpanID().String() != parentSpan {
		t.Errorf("the poll did not continue the caller's trace: trace %s parent %s", poll.SpanContext.TraceID(), poll.Parent.SpanID())
	}
	create := one(t, byName, "POST /api/jobs")
	child := false
	for _, s := range byName["store.Create"] {
		child = child || s.Parent.SpanID() == create.SpanContext.SpanID()
	}
	if !child {
		t.Error("no store.Create span is a child of the creating request's span")
	}

	// The request log lines carry the trace and the job.
	lines := requestLogs(t, &logs)
	if len(lines) != 4 {
		t.Fatalf("%d request log lines, want 4", len(lines))
	}
	if lines[0]["trace_id"] != parentTrace || lines[0]["job_id"] != pending {
		t.Errorf("poll log line: %v", lines[0])
	}
	var job struct{ ID string }
	_ = json.Unmarshal(created.Body.Bytes(), &job)
	if lines[2]["trace_id"] != create.SpanContext.TraceID().String() || lines[2]["job_id"] != job.ID || job.ID == "" {
		t.Errorf("create log line: %v (job %q)", lines[2], job.ID)
	}
}

func one(t *testing.T, byName map[string][]tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	if len(byName[name]) != 1 {
		t.Fatalf("%d spans named %q, want 1", len(byName[name]), name)
	}
	return byName[name][0]
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// requestLogs are the "request" lines of a JSON log.
func requestLogs(t *testing.T, logs *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(logs)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["msg"] == "request" {
			out = append(out, line)
		}
	}
	return out
}
