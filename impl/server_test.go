package impl_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type pollBundle struct {
	e     *echo.Echo
	st    *store.Store
	url   string
	iss   *auth.Issuer
	v     impl.Verifier
	token string
}

// setupPoll serves the real API in process, on a fresh database, with a
// local issuer whose JWKS it fetches over HTTP.
func setupPoll(tb testing.TB, opts ...func(*impl.Config)) *pollBundle {
	tb.Helper()
	st, url := pgtest.NewStore(tb)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	jwks := httptest.NewUnstartedServer(nil)
	iss := auth.NewIssuer(key, "http://"+jwks.Listener.Addr().String())
	jwks.Config.Handler = iss.JWKSHandler()
	jwks.Start()
	tb.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL(), ClientIDs: []string{"bench"}})
	if err != nil {
		tb.Fatal(err)
	}

	cfg := impl.Config{Store: st, Verifier: v, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := impl.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := iss.Mint("alice", "bench", nil, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &pollBundle{e: e, st: st, url: url, iss: iss, v: v, token: tok}
}

func (b *pollBundle) job(tb testing.TB, status job.Status) string {
	tb.Helper()
	j, _, err := b.st.Create(context.Background(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		tb.Fatal(err)
	}
	if status == job.StatusCompleted {
		_, err = b.st.DB().Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1)
			UPDATE jobs SET status = 'COMPLETED', result = '{"output":"done"}', attempts = 1,
			started_at = now(), completed_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, j.ID)
		if err != nil {
			tb.Fatal(err)
		}
	}
	return j.ID.String()
}

func (b *pollBundle) poll(tb testing.TB, id, inm string) *httptest.ResponseRecorder {
	return b.pollAs(tb, b.token, id, inm)
}

// pollAs polls with another user's token.
func (b *pollBundle) pollAs(tb testing.TB, token, id, inm string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/api/jobs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, req)
	return rec
}

// TestPollCost pins what a poll costs in database round trips: one for an
// unfinished job (200 or 304), none for a finished one once cached.
func TestPollCost(t *testing.T) {
	b := setupPoll(t)
	pending, done := b.job(t, job.StatusPending), b.job(t, job.StatusCompleted)
	etagOf := func(id string) string { return b.poll(t, id, "").Header().Get("ETag") }
	pendingTag, doneTag := etagOf(pending), etagOf(done) // also warms the caches
	tests := []struct {
		name, id, inm string
		status        int
		gets          int64
	}{
		{"pending 200", pending, "", 200, 1},
		{"pending 304", pending, pendingTag, 304, 1},
		{"finished 200", done, "", 200, 0},
		{"finished 304", done, doneTag, 304, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.st.Gets()
			rec := b.poll(t, tt.id, tt.inm)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := b.st.Gets() - before; got != tt.gets {
				t.Errorf("%d database reads, want %d", got, tt.gets)
			}
		})
	}
}

// TestPlainPollAnswersAsGetJob: a plain poll, which the route answers
// without the generated handler (a finished job from the cache, an
// unfinished one by a read), gets the status, headers and body that the
// generated handler gives the same poll with a query string (which the
// shortcut leaves to it); so does another user's job, and a missing one
// (404 both).
func TestPlainPollAnswersAsGetJob(t *testing.T) {
	b := setupPoll(t)
	bob, err := b.iss.Mint("bob", "bench", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []job.Status{job.StatusCompleted, job.StatusPending} {
		id := b.job(t, status)
		etag := b.poll(t, id, "").Header().Get("ETag") // caches a finished job
		reads := int64(0)
		if status == job.StatusPending {
			reads = 2
		}
		for _, inm := range []string{"", etag, "W/" + etag, "*", `"v0"`, `"v0", ` + etag} {
			before := b.st.Gets()
			short, generic := b.poll(t, id, inm), b.poll(t, id+"?waitSeconds=0", inm)
			if got := b.st.Gets() - before; got != reads {
				t.Errorf("%s, If-None-Match %q: %d database reads, want %d", status, inm, got, reads)
			}
			sameAnswer(t, fmt.Sprintf("%s, If-None-Match %q", status, inm), short, generic)
		}
		short, generic := b.pollAs(t, bob, id, ""), b.pollAs(t, bob, id+"?waitSeconds=0", "")
		if short.Code != http.StatusNotFound {
			t.Errorf("%s, another user's job: %d %s, want 404", status, short.Code, short.Body)
		}
		sameAnswer(t, fmt.Sprintf("%s, another user's job", status), short, generic)
	}
	missing := uuid.NewString()
	sameAnswer(t, "no such job", b.poll(t, missing, ""), b.poll(t, missing+"?waitSeconds=0", ""))
}

// sameAnswer fails unless two answers have the same status, body and
// headers but for X-Request-Id, which must differ.
func sameAnswer(t *testing.T, what string, short, generic *httptest.ResponseRecorder) {
	t.Helper()
	if short.Code != generic.Code || short.Body.String() != generic.Body.String() {
		t.Errorf("%s: %d %q, generated handler %d %q", what, short.Code, short.Body, generic.Code, generic.Body)
	}
	sh, gh := short.Header().Clone(), generic.Header().Clone()
	if sh.Get("X-Request-Id") == "" || sh.Get("X-Request-Id") == gh.Get("X-Request-Id") {
		t.Errorf("%s: X-Request-Id %q and %q", what, sh.Get("X-Request-Id"), gh.Get("X-Request-Id"))
	}
	sh.Del("X-Request-Id")
	gh.Del("X-Request-Id")
	if !reflect.DeepEqual(sh, gh) {
		t.Errorf("%s: headers %v, generated handler %v", what, sh, gh)
	}
}

// BenchmarkPoll measures one status poll through the whole server (routing,
// JWT check, validation, store) without the network; it reports database
// reads per poll beside the time.
func BenchmarkPoll(b *testing.B) {
	b.Run("metrics-off", func(b *testing.B) { benchmarkPoll(b, setupPoll(b)) })
	b.Run("metrics-on", func(b *testing.B) {
		benchmarkPoll(b, setupPoll(b, func(c *impl.Config) { c.Metrics = metrics.NewAPI(prometheus.NewRegistry()) }))
	})
	// Every request sampled, batched to an exporter that drops the spans:
	// the cost of making them, as in production, without a collector.
	b.Run("tracing-on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		defer func() {
			if err := tp.Shutdown(context.Background()); err != nil {
				b.Error(err)
			}
		}()
		defer tracing.Use(tp)()
		benchmarkPoll(b, setupPoll(b))
	})
}

// benchmarkPoll polls an unfinished and a finished job, plainly and with
// If-None-Match, through the whole server in process.
func benchmarkPoll(b *testing.B, bb *pollBundle) {
	pending, done := bb.job(b, job.StatusPending), bb.job(b, job.StatusCompleted)
	cases := []struct {
		name, id    string
		conditional bool
	}{
		{"pending", pending, false},
		{"pending-304", pending, true},
		{"finished", done, false},
		{"finished-304", done, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			inm := ""
			if c.conditional {
				inm = bb.poll(b, c.id, "").Header().Get("ETag")
			}
			bb.poll(b, c.id, inm)
			before := bb.st.Gets()
			b.ResetTimer()
			for b.Loop() {
				if rec := bb.poll(b, c.id, inm); rec.Code != http.StatusOK && rec.Code != http.StatusNotModified {
					b.Fatalf("status %d", rec.Code)
				}
			}
			b.ReportMetric(float64(bb.st.Gets()-before)/float64(b.N), "db-reads/op")
		})
	}
}

// TestRateLimits: past the per-user burst, reads and creations are 429s in
// the error shape with a Retry-After; another user is unaffected.
func TestRateLimits(t *testing.T) {
	b := setupPoll(t, func(c *impl.Config) {
		c.ReadLimit = impl.RateLimit{PerSecond: 0.5, Burst: 2}
		c.CreateLimit = impl.RateLimit{PerSecond: 0.5, Burst: 1}
	})
	id := b.job(t, job.StatusPending)
	codes := []int{b.poll(t, id, "").Code, b.poll(t, id, "").Code}
	rec := b.poll(t, id, "")
	if codes[0] != 200 || codes[1] != 200 || rec.Code != http.StatusTooManyRequests {
		t.Fatalf("reads: %v then %d, want 200 200 429", codes, rec.Code)
	}
	if rec.Header().Get("Retry-After") != "2" || rec.Body.String() != `{"error":"Too many requests"}`+"\n" {
		t.Errorf("429: Retry-After %q body %s", rec.Header().Get("Retry-After"), rec.Body)
	}
	create := func() int {
		req := httptest.NewRequest("POST", "/api/jobs", strings.NewReader(`{"type":"RISK_ANALYSIS","input":{"text":"x"}}`))
		req.Header.Set("Authorization", "Bearer "+b.token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		b.e.ServeHTTP(rec, req)
		return rec.Code
	}
	if first, second := create(), create(); first != 202 || second != 429 {
		t.Errorf("creations: %d then %d, want 202 then 429 (a separate bucket from reads)", first, second)
	}
}
