package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/apitest"
	"github.com/jobsd/jobsd/internal/sandbox"
	"github.com/jobsd/jobsd/timestamp"
)

var srv *apitest.Server

func TestMain(m *testing.M) {
	sandbox.Main() // the worker's PDF and DOCX parses re-execute this binary
	os.Exit(apitest.Main(m, &srv))
}

// recorder counts the requests a client sends.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// newClient returns a client for user sub of the in-process server.
func newClient(t *testing.T, sub string, admin bool, opts ...client.Option) *client.Client {
	t.Helper()
	tok, err := srv.Token(sub+"-"+uuid.NewString(), admin) // fresh user: runs (-count) do not share jobs
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL, append([]client.Option{client.WithToken(tok)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func preview(t *testing.T, c *client.Client, prompt string) *gen.Job {
	t.Helper()
	j, err := c.CreatePreview(t.Context(), gen.PromptPreviewRequest{Prompt: prompt}, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestWaitLongPoll(t *testing.T) {
	rec := &recorder{}
	c := newClient(t, "longpoll", true, client.WithHTTPClient(&http.Client{Transport: rec}))
	j := preview(t, c, "Summarise the market risks for maize farmers. [[simulate:slow=2s]]")
	if j.Status != gen.PENDING {
		t.Fatalf("created job is %s", j.Status)
	}
	var seen []gen.JobStatus
	start := time.Now()
	done, err := c.Wait(t.Context(), j.Id.String(), client.WithProgress(func(j gen.Job) { seen = append(seen, j.Status) }))
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != gen.COMPLETED || done.Attempts != 1 {
		t.Fatalf("job %s attempts %d", done.Status, done.Attempts)
	}
	if len(seen) == 0 || seen[len(seen)-1] != gen.COMPLETED {
		t.Errorf("progress saw %v", seen)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Wait took %v for a 2 s job", d)
	}
	// One plain GET, then long polls: a handful of requests, not one per
	// poll interval, each after the first with waitSeconds=30 and the ETag.
	var gets []*http.Request
	for _, r := range rec.requests() {
		if r.Method == http.MethodGet {
			gets = append(gets, r)
		}
	}
	if len(gets) < 2 || len(gets) > 5 {
		t.Fatalf("%d GETs, want 2 to 5", len(gets))
	}
	for _, r := range gets[1:] {
		if r.URL.Query().Get("waitSeconds") != "30" || r.Header.Get("If-None-Match") == "" {
			t.Errorf("GET %s If-None-Match %q: not a long poll", r.URL, r.Header.Get("If-None-Match"))
		}
	}
	if auth := gets[0].Header.Get("Authorization"); !strings.HasPrefix(auth, "Bearer ") {
		t.Errorf("Authorization %q", auth)
	}
	if ua := gets[0].Header.Get("User-Agent"); ua != client.DefaultUserAgent {
		t.Errorf("User-Agent %q", ua)
	}
	res, err := client.DecodeResult[client.AIPreviewResult](done)
	if err != nil || res.Output == "" {
		t.Errorf("result %+v, %v", res, err)
	}
	if _, err := client.DecodeResult[client.RiskAnalysisResult](done); err == nil {
		t.Error("decoding an AI_PREVIEW result as RISK_ANALYSIS succeeded")
	}
}

// pollOnly is a server that speaks the polling protocol (ETag, 304,
// Retry-After: 1) but ignores waitSeconds: the job is PENDING, PROCESSING
// after 1.5 s, COMPLETED after 2.5 s.
type pollOnly struct {
	start time.Time
	id    uuid.UUID
	mu    sync.Mutex
	times []time.Time
	waits []string
}

func (p *pollOnly) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.times = append(p.times, time.Now())
	p.waits = append(p.waits, r.URL.Query().Get("waitSeconds"))
	p.mu.Unlock()
	if r.URL.Path != "/api/jobs/"+p.id.String() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"Job not found or does not belong to the requesting user"}`)
		return
	}
	now := time.Now()
	j := gen.Job{Id: p.id, Type: gen.JobTypeAIPREVIEW, Status: gen.PENDING, CreatedAt: timestamp.New(p.start), UpdatedAt: timestamp.New(p.start)}
	etag := `"v1"`
	switch e := now.Sub(p.start); {
	case e > 2500*time.Millisecond:
		j.Status, j.Attempts, etag = gen.COMPLETED, 1, `"v3"`
		res := json.RawMessage(`{"output":"done"}`)
		j.Result = &res
	case e > 1500*time.Millisecond:
		j.Status, j.Attempts, etag = gen.PROCESSING, 1, `"v2"`
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, no-cache")
	if j.Status == gen.PENDING || j.Status == gen.PROCESSING {
		w.Header().Set("Retry-After", "1")
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(j)
}

func TestWaitFallsBackToPolling(t *testing.T) {
	p := &pollOnly{start: time.Now(), id: uuid.New()}
	ts := httptest.NewServer(p)
	defer ts.Close()
	c, err := client.New(ts.URL, client.WithToken("x"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []gen.JobStatus
	j, err := c.Wait(t.Context(), p.id.String(), client.WithProgress(func(j gen.Job) { seen = append(seen, j.Status) }))
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != gen.COMPLETED {
		t.Fatalf("status %s", j.Status)
	}
	if fmt.Sprint(seen) != "[PENDING PROCESSING COMPLETED]" {
		t.Errorf("progress saw %v", seen)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The first long poll answered at once with a 304: after it, plain polls
	// only, one Retry-After (1 s) apart.
	longPolls := 0
	for _, w := range p.waits {
		if w != "" {
			longPolls++
		}
	}
	if longPolls != 1 {
		t.Errorf("%d long polls (%v), want 1", longPolls, p.waits)
	}
	for i := 3; i < len(p.times); i++ {
		if gap := p.times[i].Sub(p.times[i-1]); gap < 900*time.Millisecond {
			t.Errorf("poll %d came %v after the previous one; want >= Retry-After", i, gap)
		}
	}
	if len(p.times) > 7 {
		t.Errorf("%d polls for a 2.5 s job at 1 s intervals", len(p.times))
	}
}

func TestWaitJobFailed(t *testing.T) {
	c := newClient(t, "failer", true)
	j := preview(t, c, "Summarise the risks. [[simulate:throttle]]")
	got, err := c.Wait(t.Context(), j.Id.String())
	var fe *client.JobFailedError
	if !errors.As(err, &fe) {
		t.Fatalf("err %v (%T), want *JobFailedError", err, err)
	}
	const want = "Bedrock API error: ThrottlingException - Rate exceeded"
	if fe.Message != want || !strings.Contains(err.Error(), want) {
		t.Errorf("message %q, error %q", fe.Message, err)
	}
	if got == nil || got.Status != gen.FAILED || got.Attempts != 3 || fe.Job != got {
		t.Errorf("job %+v", got)
	}
}

func TestWaitContextCancel(t *testing.T) {
	c := newClient(t, "canceller", true)
	j := preview(t, c, "A slow one. [[simulate:slow=30s]]")
	defer func() { _, _ = c.Cancel(context.Background(), j.Id.String()) }() // cleanup: the test may have finished it

	// Long polling: the request in flight is abandoned.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	last, err := c.Wait(ctx, j.Id.String())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Wait returned %v after its context ended", d-300*time.Millisecond)
	}
	if last == nil || last.Id != j.Id {
		t.Errorf("last job %+v", last)
	}

	// Plain polling: the sleep between polls is cut short.
	ctx2, cancel2 := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel2)
	start = time.Now()
	_, err = c.Wait(ctx2, j.Id.String(), client.WithLongPoll(0), client.WithPollInterval(time.Minute))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Wait returned after %v", d)
	}
}

func TestAPIErrors(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, "errors", false)

	_, err := c.Get(ctx, uuid.NewString())
	var ae *client.APIError
	if !errors.As(err, &ae) || !client.IsNotFound(err) || ae.Message != "Job not found or does not belong to the requesting user" || ae.RequestID == "" {
		t.Errorf("404: %#v", err)
	}

	anon, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{anon, mustNew(t, client.WithToken("not-a-jwt"))} {
		_, err = cl.Get(ctx, uuid.NewString())
		if !client.IsUnauthorized(err) || !errors.As(err, &ae) || ae.Message != "Missing or invalid Bearer token" {
			t.Errorf("401: %v", err)
		}
	}

	_, err = c.CreateJob(ctx, "GAP_DETECTION", map[string]any{"text": "x"}, client.CreateOptions{})
	if !client.IsBadRequest(err) || !errors.As(err, &ae) || !strings.Contains(ae.Message, "requirements") {
		t.Errorf("400: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "400 Bad Request: ") {
		t.Errorf("error text %q", err)
	}

	_, err = c.CreatePreview(ctx, gen.PromptPreviewRequest{Prompt: "x"}, client.CreateOptions{})
	if !client.IsForbidden(err) {
		t.Errorf("403: %v", err)
	}

	if _, err := c.Get(ctx, "not-a-uuid"); err == nil || client.StatusCode(err) != 0 {
		t.Errorf("bad id: %v", err)
	}

	failing := client.TokenFunc(func(context.Context) (string, error) { return "", errors.New("no credentials") })
	if _, err := mustNew(t, client.WithTokenSource(failing)).Get(ctx, uuid.NewString()); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("token source error: %v", err)
	}
}

func mustNew(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListPaging(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, "pager", false)
	var ids []uuid.UUID
	for i := range 5 {
		j, err := c.CreateJob(ctx, "RISK_ANALYSIS", gen.RiskAnalysisInput{Text: ptr(fmt.Sprintf("Roads flood in April, case %d.", i))}, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.Id)
	}
	var pages []int
	opts := client.ListOptions{Limit: 2}
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page.Jobs))
		if page.NextCursor == nil {
			break
		}
		opts.Cursor = *page.NextCursor
	}
	if fmt.Sprint(pages) != "[2 2 1]" {
		t.Errorf("pages %v", pages)
	}
	var got []uuid.UUID
	for j, err := range c.All(ctx, client.ListOptions{Limit: 2, Type: gen.JobTypeRISKANALYSIS}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, j.Id)
	}
	if len(got) != 5 {
		t.Fatalf("All yielded %d jobs", len(got))
	}
	for i := range got { // newest first
		if got[i] != ids[len(ids)-1-i] {
			t.Errorf("job %d is %s, want %s", i, got[i], ids[len(ids)-1-i])
		}
	}
	n := 0
	for _, err := range c.All(ctx, client.ListOptions{Limit: 2}) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if n++; n == 3 {
			break
		}
	}
	for _, err := range c.All(ctx, client.ListOptions{Limit: 1000}) {
		if !client.IsBadRequest(err) {
			t.Errorf("limit 1000: %v", err)
		}
	}
	page, err := c.List(ctx, client.ListOptions{Type: gen.JobTypeGAPDETECTION})
	if err != nil || len(page.Jobs) != 0 {
		t.Errorf("type filter: %v %v", page, err)
	}
}

func TestCancelAndIdempotency(t *testing.T) {
	ctx := t.Context()
	c := newClient(t, "cancel", true)
	req := gen.PromptPreviewRequest{Prompt: "Slow. [[simulate:slow=30s]]"}
	j, err := c.CreatePreview(ctx, req, client.CreateOptions{IdempotencyKey: "k-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.CreatePreview(ctx, req, client.CreateOptions{IdempotencyKey: "k-1"})
	if err != nil || again.Id != j.Id {
		t.Fatalf("replayed create: %v %v", again, err)
	}
	req.Prompt = "Another body"
	if _, err := c.CreatePreview(ctx, req, client.CreateOptions{IdempotencyKey: "k-1"}); !client.IsConflict(err) {
		t.Errorf("reused key: %v", err)
	}

	cancelled, err := c.Cancel(ctx, j.Id.String())
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.Status != gen.FAILED || cancelled.Error == nil || *cancelled.Error != "Cancelled by user" {
		t.Errorf("cancelled job %+v", cancelled)
	}
	_, err = c.Cancel(ctx, j.Id.String())
	var ae *client.APIError
	if !client.IsConflict(err) || !errors.As(err, &ae) || ae.Message != "Job has already finished" {
		t.Errorf("second cancel: %v", err)
	}
	if _, err := c.Cancel(ctx, uuid.NewString()); !client.IsNotFound(err) {
		t.Errorf("cancel unknown: %v", err)
	}
	// Waiting for a cancelled job returns at once with JobFailedError.
	_, err = c.Wait(ctx, j.Id.String())
	var fe *client.JobFailedError
	if !errors.As(err, &fe) || fe.Message != "Cancelled by user" {
		t.Errorf("wait: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
