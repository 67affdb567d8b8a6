package impl_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLimitsAcrossReplicas: two API processes on one database, each with its
// entry in the registry of live API processes, share a user's read limit:
// a burst spread over both gets about the configured limit, not twice it.
func TestLimitsAcrossReplicas(t *testing.T) {
	limit := impl.RateLimit{PerSecond: 1, Burst: 20}
	var rA *impl.Replicas
	b := setupPoll(t, func(c *impl.Config) {
		rA = impl.NewReplicas(c.Store, discard())
		c.Replicas, c.ReadLimit = rA, limit
	})
	st2, err := store.Open(t.Context(), b.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	rB := impl.NewReplicas(st2, discard())
	e2, err := impl.New(impl.Config{Store: st2, Verifier: b.v, Log: discard(), Replicas: rB, ReadLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*impl.Replicas{rA, rB, rA} { // A's second heartbeat sees B
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if rA.Count() != 2 || rB.Count() != 2 {
		t.Fatalf("replicas counted: %d and %d, want 2 and 2", rA.Count(), rB.Count())
	}

	id := b.job(t, job.StatusPending)
	servers := []*echo.Echo{b.e, e2}
	codes := map[int]int{}
	start := time.Now()
	for i := range 200 {
		req := httptest.NewRequest("GET", "/api/jobs/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		rec := httptest.NewRecorder()
		servers[i%2].ServeHTTP(rec, req)
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
			t.Fatal("a 429 without Retry-After")
		}
	}
	elapsed := time.Since(start)
	// Each process allows a burst of 20 ÷ 2 and refills at 1/s ÷ 2: the
	// two let through 20 plus what refilled meanwhile (plus one token of
	// rounding each). Per-process limits would let through 40.
	most := 20 + int(math.Ceil(limit.PerSecond*elapsed.Seconds())) + 2
	if codes[200] < 20 || codes[200] > most || codes[200]+codes[429] != 200 {
		t.Errorf("in %v: %d answered 200 and %d 429 (%v); want 20..%d 200s and the rest 429",
			elapsed, codes[200], codes[429], codes, most)
	}
	t.Logf("in %v: %d of 200 reads allowed (limit 1/s, burst 20, 2 replicas)", elapsed, codes[200])
}

// TestWaiterCap: a user's long polls and event streams are capped; the
// (cap+1)th is a 429 that holds nothing, and once a waiter ends another is
// accepted. Polls that do not wait are not counted, in the waiters table
// either.
func TestWaiterCap(t *testing.T) {
	b := setupPoll(t)
	h, err := hub.New(b.url, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r := impl.NewReplicas(b.st, discard())
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	e, err := impl.New(impl.Config{Store: b.st, Verifier: b.v, Log: discard(), Hub: h, UserWaiters: 2, Replicas: r})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	get := func(ctx context.Context, path, etag string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	status := func(path, etag string) (int, string) {
		resp := get(t.Context(), path, etag)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	job1, job2 := b.job(t, job.StatusPending), b.job(t, job.StatusPending)
	etag := get(t.Context(), "/api/jobs/"+job1, "").Header.Get("ETag") // both jobs are at version 1

	// Two long polls that wait: the cap. They run in the background, so
	// they report their status instead of failing the test.
	background, stop := context.WithCancel(context.Background())
	defer stop()
	waiter := func(path string) <-chan int {
		done := make(chan int, 1)
		go func() {
			req, _ := http.NewRequestWithContext(background, "GET", srv.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+b.token)
			req.Header.Set("If-None-Match", etag)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		return done
	}
	first := waiter("/api/jobs/" + job1 + "?waitSeconds=30")
	waiter("/api/jobs/" + job2 + "?waitSeconds=30")
	eventually.True(t, 10*time.Second, "both long polls waiting", func() bool { return h.Waiting() == 2 })

	for _, path := range []string{"/api/jobs/" + job2 + "?waitSeconds=30", "/api/jobs/" + job2 + "/events"} {
		resp := get(t.Context(), path, etag)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || string(body) != `{"error":"Too many requests"}`+"\n" {
			t.Errorf("%s over the cap: %d Retry-After %q %s; want 429, 3 and the error shape",
				path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if code, _ := status("/api/jobs/"+job2, ""); code != 200 {
		t.Errorf("a plain poll over the waiter cap: %d, want 200", code)
	}
	if code, _ := status("/api/jobs/"+job2+"?waitSeconds=30", `"v0"`); code != 200 {
		t.Errorf("a long poll that has nothing to wait for: %d, want 200", code)
	}
	if n := h.Waiting(); n != 2 {
		t.Errorf("%d subscriptions after the refusals, want 2: a refused waiter holds nothing", n)
	}
	if n := openWaiterRows(t, b); n != 2 {
		t.Errorf("%d rows in the waiters table after the refusals, want 2", n)
	}

	// The first waiter ends (its job changes); its answer is written after
	// its slot is released, so another waiter is accepted at once.
	if _, err := b.st.DB().Exec(`UPDATE jobs SET status = 'PROCESSING', attempts = 1, started_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, job1); err != nil {
		t.Fatal(err)
	}
	if code := <-first; code != 200 {
		t.Fatalf("the first long poll ended with %d, want 200", code)
	}
	if code, body := status("/api/jobs/"+job2+"?waitSeconds=1", etag); code != 304 {
		t.Errorf("a long poll after one ended: %d %s, want 304 once its second passed", code, body)
	}
	stream := get(background, "/api/jobs/"+job1+"/events", "")
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("an event stream within the cap: %d", stream.StatusCode)
	}
	if code, _ := status("/api/jobs/"+job2+"?waitSeconds=30", etag); code != 429 {
		t.Errorf("with a long poll and a stream open: %d, want 429", code)
	}
}

// TestWaiterCapAcrossReplicas: two API processes registered on one database
// cap a user's waiters at exactly the configured total however they are
// spread (3 on A and 1 on B with cap 4; the fifth is a 429 on either); a
// slot is released when its client leaves, when its long poll answers, and
// when its job finishes, and is usable again on either process once its row
// is deleted, a few milliseconds later (at once on its own process).
// Requests that do not wait write nothing; a process whose open the
// database refuses admits by its share instead of failing.
func TestWaiterCapAcrossReplicas(t *testing.T) {
	const capacity = 4
	b := setupPoll(t)
	st2, err := store.Open(t.Context(), b.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	serve := func(st *store.Store, r *impl.Replicas) string {
		t.Helper()
		e, err := impl.New(impl.Config{Store: st, Verifier: b.v, Log: discard(), Replicas: r, UserWaiters: capacity})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	rA, rB := impl.NewReplicas(b.st, discard()), impl.NewReplicas(st2, discard())
	for _, r := range []*impl.Replicas{rA, rB, rA} {
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	srvA, srvB := serve(b.st, rA), serve(st2, rB)
	// C's first heartbeat never happened: the database refuses its opens
	// (its waiters would reference no registry entry).
	srvC := serve(b.st, impl.NewReplicas(b.st, discard()))

	job1, job2, done := b.job(t, job.StatusPending), b.job(t, job.StatusPending), b.job(t, job.StatusCompleted)
	const etag = `"v1"` // both pending jobs' first version
	do := func(ctx context.Context, url, path, header, value string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", url+path, nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	status := func(url, path, header, value string) int {
		t.Helper()
		resp := do(t.Context(), url, path, header, value)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "3" {
			t.Errorf("%s: a 429 with Retry-After %q, want 3", path, resp.Header.Get("Retry-After"))
		}
		return resp.StatusCode
	}
	// Long polls in the background report their status on a channel.
	longPoll := func(ctx context.Context, url, id string) <-chan int {
		code := make(chan int, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/jobs/"+id+"?waitSeconds=30", nil)
			req.Header.Set("Authorization", "Bearer "+b.token)
			req.Header.Set("If-None-Match", etag)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				code <- -1
				return
			}
			resp.Body.Close()
			code <- resp.StatusCode
		}()
		return code
	}
	rowsAre := func(want int) {
		t.Helper()
		eventually.True(t, 10*time.Second, fmt.Sprintf("%d waiter rows", want), func() bool { return openWaiterRows(t, b) == want })
	}

	gone, leave := context.WithCancel(context.Background())
	defer leave()
	left := longPoll(gone, srvA, job1)
	polls := []<-chan int{longPoll(t.Context(), srvA, job1), longPoll(t.Context(), srvA, job1)}
	rowsAre(3)
	streamCtx, closeStream := context.WithCancel(t.Context())
	defer closeStream()
	stream := do(streamCtx, srvB, "/api/jobs/"+job2+"/events", "", "")
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("the fourth waiter, a stream on B: %d, want 200", stream.StatusCode)
	}
	rowsAre(capacity)

	over := []struct{ name, url, path, header, value string }{
		{"a long poll on A", srvA, "/api/jobs/" + job2 + "?waitSeconds=30", "If-None-Match", etag},
		{"a long poll on B", srvB, "/api/jobs/" + job2 + "?waitSeconds=30", "If-None-Match", etag},
		{"a stream on A", srvA, "/api/jobs/" + job1 + "/events", "", ""},
		{"a stream on B", srvB, "/api/jobs/" + job1 + "/events", "", ""},
	}
	for _, o := range over {
		if code := status(o.url, o.path, o.header, o.value); code != 429 {
			t.Errorf("%s over the cap: %d, want 429", o.name, code)
		}
	}
	notWaiting := []struct {
		name, url, path, header, value string
		want                           int
	}{
		{"a plain poll", srvB, "/api/jobs/" + job2, "", "", 200},
		{"a long poll with a stale ETag", srvA, "/api/jobs/" + job2 + "?waitSeconds=30", "If-None-Match", `"v0"`, 200},
		{"a long poll of a finished job", srvB, "/api/jobs/" + done + "?waitSeconds=30", "If-None-Match", `"v2"`, 304},
		{"a stream reconnect after the last event", srvA, "/api/jobs/" + done + "/events", "Last-Event-ID", `"v2"`, 204},
	}
	for _, n := range notWaiting {
		if code := status(n.url, n.path, n.header, n.value); code != n.want {
			t.Errorf("%s at the cap: %d, want %d", n.name, code, n.want)
		}
	}
	if n := openWaiterRows(t, b); n != capacity {
		t.Fatalf("%d waiter rows after refusals and polls that do not wait, want %d", n, capacity)
	}
	if code := status(srvC, "/api/jobs/"+job2+"?waitSeconds=30", "If-None-Match", etag); code != 429 {
		t.Errorf("a long poll on C, not yet registered, over the cap: %d, want 429", code)
	}

	leave() // a client leaves: its slot is released, usable on B once deleted
	if code := <-left; code != -1 {
		t.Errorf("the abandoned long poll: %d", code)
	}
	rowsAre(capacity - 1)
	// Under the cap, the database refuses C's open (its row would reference
	// no registry entry): C admits by its share (4 ÷ 1 live process, as C
	// counts) rather than fail, and writes nothing.
	if code := status(srvC, "/api/jobs/"+job2+"?waitSeconds=1", "If-None-Match", etag); code != 304 {
		t.Errorf("a long poll on C, whose open the database refuses: %d, want 304 after its wait", code)
	}
	if code := status(srvB, "/api/jobs/"+job2+"?waitSeconds=1", "If-None-Match", etag); code != 304 {
		t.Errorf("a long poll on B after one on A ended: %d, want 304 after its wait", code)
	}
	rowsAre(capacity - 1) // the answered long poll's row is deleted
	closeStream()         // the stream's client leaves
	rowsAre(capacity - 2)
	if _, err := b.st.DB().Exec(`UPDATE jobs SET status = 'PROCESSING', attempts = 1, started_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, job1); err != nil {
		t.Fatal(err)
	}
	for _, p := range polls { // their job changed: they answer and release
		if code := <-p; code != 200 {
			t.Errorf("a long poll whose job changed: %d, want 200", code)
		}
	}
	rowsAre(0) // every waiter ended
}

// openWaiterRows counts the rows of the waiters table.
func openWaiterRows(t *testing.T, b *pollBundle) int {
	t.Helper()
	var n int
	if err := b.st.DB().Get(&n, `SELECT count(*) FROM waiters`); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuthFailFlood: past its burst of failed authentications, a client
// address gets 429 before its token is checked (even a valid token, which
// shows the check comes first); the client address comes from
// X-Forwarded-For only when a trusted proxy sent it.
func TestAuthFailFlood(t *testing.T) {
	_, proxies, _ := net.ParseCIDR("10.0.0.0/8")
	b := setupPoll(t, func(c *impl.Config) {
		c.AuthFailLimit = impl.RateLimit{PerSecond: 0.01, Burst: 5}
		c.TrustedProxies = []*net.IPNet{proxies}
	})
	id := b.job(t, job.StatusPending)
	do := func(peer, xff, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/jobs/"+id, nil)
		req.RemoteAddr = peer
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		b.e.ServeHTTP(rec, req)
		return rec
	}
	const proxy, attacker = "10.0.0.5:41000", "203.0.113.7"
	for i := range 5 {
		if rec := do(proxy, attacker, "not-a-token"); rec.Code != 401 {
			t.Fatalf("bad token %d within the burst: %d, want 401", i+1, rec.Code)
		}
	}
	tests := []struct {
		name, peer, xff, token string
		want                   int
	}{
		{"bad token past the burst", proxy, attacker, "not-a-token", 429},
		{"valid token from the same address: refused before the check", proxy, attacker, b.token, 429},
		{"same address through two proxies", proxy, attacker + ", 10.2.2.2", b.token, 429},
		{"another client behind the proxy", proxy, "203.0.113.8", b.token, 200},
		{"another client forging the address on the left", proxy, attacker + ", 203.0.113.8", b.token, 200},
		{"an untrusted peer's X-Forwarded-For is ignored", "198.51.100.1:5000", attacker, b.token, 200},
		{"the proxy itself", proxy, "", b.token, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(tt.peer, tt.xff, tt.token)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want == 429 && (rec.Header().Get("Retry-After") == "" || rec.Body.String() != `{"error":"Too many requests"}`+"\n") {
				t.Errorf("429: Retry-After %q body %s", rec.Header().Get("Retry-After"), rec.Body)
			}
		})
	}
}

// TestAuthFailThenPolls: one bad token from an address costs that address
// one token of its failure budget, not every later request's: a client
// that sent one (a restart with a stale token, a probe behind its NAT) and
// then polls faster than the limit's rate with a valid token gets no 429.
func TestAuthFailThenPolls(t *testing.T) {
	b := setupPoll(t, func(c *impl.Config) {
		c.AuthFailLimit = impl.RateLimit{PerSecond: 0.01, Burst: 5}
	})
	id := b.job(t, job.StatusPending)
	do := func(token string) int {
		req := httptest.NewRequest("GET", "/api/jobs/"+id, nil)
		req.RemoteAddr = "203.0.113.9:5000"
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		b.e.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := do("not-a-token"); code != 401 {
		t.Fatalf("bad token: %d, want 401", code)
	}
	for i := range 50 { // ten times what is left of the burst
		if code := do(b.token); code != 200 {
			t.Fatalf("valid poll %d after one bad token: %d, want 200", i+1, code)
		}
	}
	for i := range 4 { // the rest of the burst is still there for failures
		if code := do("not-a-token"); code != 401 {
			t.Fatalf("bad token %d: %d, want 401", i+2, code)
		}
	}
	if code := do(b.token); code != 429 {
		t.Fatalf("past the burst of failures: %d, want 429", code)
	}
}

// BenchmarkPollLimits measures what the deployment-wide limits add to a
// status poll through the whole server: "off" has no limit at all, "on" has
// the per-user read limit (never reached) divided by a registry count of 3,
// the waiter cap, the per-address limit of failed authentications and
// X-Forwarded-For trust.
func BenchmarkPollLimits(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchmarkPoll(b, setupPoll(b)) })
	b.Run("on", func(b *testing.B) {
		_, proxies, _ := net.ParseCIDR("10.0.0.0/8")
		benchmarkPoll(b, setupPoll(b, func(c *impl.Config) {
			r := impl.NewReplicas(c.Store, discard())
			for _, id := range []string{"a", "b"} {
				if _, err := c.Store.RegisterProcess(context.Background(), store.Process{ID: id, Kind: store.KindAPI, Host: "h", PID: 1, Version: "v", StartedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			if err := r.Refresh(context.Background()); err != nil || r.Count() != 3 {
				b.Fatalf("replicas: %d, %v", r.Count(), err)
			}
			c.Replicas = r
			c.ReadLimit = impl.RateLimit{PerSecond: 1e9, Burst: 1e9}
			c.CreateLimit = impl.RateLimit{PerSecond: 5, Burst: 20}
			c.UserWaiters = 20
			c.AuthFailLimit = impl.RateLimit{PerSecond: 20, Burst: 40}
			c.TrustedProxies = []*net.IPNet{proxies}
		}))
	})
}
