package tracing_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/jobsd/jobsd/internal/apitest"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/tracing"
	"github.com/jobsd/jobsd/tracing/tracingtest"
)

// srv is the API and a worker (with the local model provider) in process,
// and logs what both of them log, as JSON lines.
var (
	srv  *apitest.Server
	logs lockedBuffer
)

func TestMain(m *testing.M) {
	var err error
	srv, err = apitest.Start(apitest.Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

// TestAttemptLinkedToRequest: the worker's attempt span is linked to the
// span of the request that created the job (through the trace context
// stored with the job), the model call is a child of the attempt, and the
// attempt's log line carries its trace id.
func TestAttemptLinkedToRequest(t *testing.T) {
	exp := tracingtest.Record(t)
	id := createPreview(t)
	attempt := waitForSpan(t, func() (tracetest.SpanStub, bool) {
		for _, s := range tracingtest.Named(exp, "process AI_PREVIEW") {
			if v, _ := tracingtest.Attr(s, "jobsd.job.id"); v == id {
				return s, true
			}
		}
		return tracetest.SpanStub{}, false
	})

	var request tracetest.SpanStub
	for _, s := range tracingtest.Named(exp, "POST /api/admin/prompts/preview") {
		if v, _ := tracingtest.Attr(s, "jobsd.job.id"); v == id {
			request = s
		}
	}
	if !request.SpanContext.IsValid() {
		t.Fatal("no request span names the created job")
	}
	if !tracingtest.Linked(attempt, request.SpanContext) {
		t.Errorf("the attempt span's links %v do not reach the creating request's span %s", attempt.Links, request.SpanContext.SpanID())
	}
	if attempt.Parent.IsValid() || attempt.SpanContext.TraceID() == request.SpanContext.TraceID() {
		t.Error("the attempt span should start a trace of its own, linked to the request's")
	}
	if v, _ := tracingtest.Attr(attempt, "jobsd.attempt.outcome"); v != "completed" {
		t.Errorf("jobsd.attempt.outcome = %q, want completed", v)
	}

	var chat []tracetest.SpanStub
	for _, s := range tracingtest.Named(exp, "chat local") {
		if s.Parent.SpanID() == attempt.SpanContext.SpanID() {
			chat = append(chat, s)
		}
	}
	if len(chat) != 1 || chat[0].SpanContext.TraceID() != attempt.SpanContext.TraceID() {
		t.Fatalf("%d model spans are children of the attempt span, want 1", len(chat))
	}
	if v, _ := tracingtest.Attr(chat[0], "gen_ai.operation.name"); v != "chat" {
		t.Errorf("gen_ai.operation.name = %q", v)
	}

	line := logLine(t, "job attempt done", id)
	if line["trace_id"] != attempt.SpanContext.TraceID().String() {
		t.Errorf("attempt log line's trace_id %v, want %s", line["trace_id"], attempt.SpanContext.TraceID())
	}
}

// TestOTLPExport: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP
// receiver, Setup exports the spans of a job's life there, as protobuf
// ExportTraceServiceRequests on POST /v1/traces.
func TestOTLPExport(t *testing.T) {
	rcv := &receiver{}
	collector := httptest.NewServer(rcv)
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // milliseconds: export soon
	t.Setenv("OTEL_SERVICE_NAME", "jobsd-otlp-test")
	shutdown, err := tracing.Setup(t.Context(), "jobsd-test", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.Enabled() {
		t.Fatal("tracing is off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	id := createPreview(t)
	want := []string{"POST /api/admin/prompts/preview", "store.Create", "store.Claim", "process AI_PREVIEW", "chat local", "store.Finish"}
	waitForSpan(t, func() (tracetest.SpanStub, bool) { return tracetest.SpanStub{}, rcv.has("process AI_PREVIEW") })
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tracing.Enabled() {
		t.Error("tracing still on after shutdown")
	}
	names, services, errs := rcv.result()
	for _, e := range errs {
		t.Error(e)
	}
	for _, n := range want {
		if !slices.Contains(names, n) {
			t.Errorf("the receiver got no %q span; it got %v", n, names)
		}
	}
	for _, n := range names {
		if strings.Contains(n, id) {
			t.Errorf("span name %q holds the job id", n)
		}
	}
	if !slices.Contains(services, "jobsd-otlp-test") {
		t.Errorf("service names %v: OTEL_SERVICE_NAME was not applied", services)
	}
}

// receiver is an OTLP/HTTP trace receiver: it decodes what it is sent as
// the protocol says and keeps the span and service names.
type receiver struct {
	mu       sync.Mutex
	names    []string
	services []string
	errs     []error
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	err := r.receive(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *receiver) receive(req *http.Request) error {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		return fmt.Errorf("the exporter sent %s %s, want POST /v1/traces", req.Method, req.URL.Path)
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return fmt.Errorf("content type %q, want application/x-protobuf", ct)
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			return err
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	var msg collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		return fmt.Errorf("decode ExportTraceServiceRequest: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range msg.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				r.services = append(r.services, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.names = append(r.names, s.Name)
			}
		}
	}
	return nil
}

func (r *receiver) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.names, name)
}

func (r *receiver) result() (names, services []string, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names), slices.Clone(r.services), slices.Clone(r.errs)
}

// createPreview creates an AI_PREVIEW job through the API and returns its id.
func createPreview(t *testing.T) string {
	t.Helper()
	tok, err := srv.Token("alice", true)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/admin/prompts/preview", strings.NewReader(`{"prompt":"Summarise the risks of maize farming."}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var job struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&job); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	return job.ID
}

// waitForSpan waits (a functional bound, generous) until find finds.
func waitForSpan(t *testing.T, find func() (tracetest.SpanStub, bool)) tracetest.SpanStub {
	t.Helper()
	var s tracetest.SpanStub
	eventually.True(t, 20*time.Second, "the span", func() bool {
		var ok bool
		s, ok = find()
		return ok
	})
	return s
}

// logLine is the log line with that message about that job.
func logLine(t *testing.T, msg, jobID string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg && line["job_id"] == jobID {
			return line
		}
	}
	t.Fatalf("no %q log line for job %s", msg, jobID)
	return nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}
