package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// TestReplicas runs the deployment a team grows into: three API processes
// behind a load balancer and three workers on one database, with clients
// creating, polling, long-polling and streaming through the balancer; then
// every API process and every worker is restarted in turn (SIGTERM, start
// again) under that load. Nothing may be lost or completed twice (the
// audit), every waiter must see its job finish, and no answer may be a 5xx
// but the documented 503.
func TestReplicas(t *testing.T) {
	proctest.SkipShort(t, "replica")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	iss := newIssuer(t)

	// The balancer checks /readyz every 100 ms; an API keeps serving for
	// 400 ms after SIGTERM while it says 503 there.
	apiEnv := []string{"JOBS_DRAIN_DELAY=400ms"}
	var apis, workers [3]*proc
	lb := newBalancer(t)
	for i := range apis {
		apis[i] = startServe(t, dbURL, iss, apiEnv...)
		lb.set(i, apis[i].Addr)
	}
	for i := range workers {
		workers[i] = startWorker(t, dbURL)
	}
	lb.waitHealthy(t, 3)
	base := lb.url
	c := newClient(base, iss.token(keyA, "alice", true))

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	rec := &recorder{}
	created := &ids{}
	load := runLoad(ctx, c, rec, created, 3, 3, 600)
	w := startWaiters(ctx, c, created, rec)

	// Rolling restarts under load: each API, then each worker, one at a
	// time, each back before the next goes.
	eventually.True(t, 30*time.Second, "10 jobs created and a long poll and a stream waiting", func() bool {
		return len(created.list()) >= 10 && w.started.Load() >= 2
	})
	for i := range apis {
		apis[i].terminate(t)
		apis[i] = startServe(t, dbURL, iss, apiEnv...)
		lb.set(i, apis[i].Addr)
		lb.waitHealthy(t, 3)
	}
	for i := range workers {
		workers[i].terminate(t)
		workers[i] = startWorker(t, dbURL)
	}
	restarted := time.Now()
	eventually.True(t, 30*time.Second, "20 requests to the restarted deployment answered", func() bool {
		return len(window(rec.all(), restarted, time.Now().Add(time.Hour), nil)) >= 20
	})
	stop()
	load.Wait()

	waitAllTerminal(t, direct, 60*time.Second)
	waited := w.wait(t, 30*time.Second)
	known := created.list()
	rep := audit(t, direct, known)
	rs := rec.all()
	if n, first := problems(rs); n > 0 {
		t.Errorf("%d bad answers through the balancer, first: %v", n, first)
	}
	var drained int
	for _, r := range rs {
		if r.status == http.StatusServiceUnavailable {
			drained++
		}
	}
	t.Logf("replicas: %d jobs created through 3 APIs and 3 workers, all restarted; %s; %d waiters (long polls and streams) saw their job finish; %d answers 503 (documented shape); balancer: %d connections refused and retried elsewhere; responses %s",
		len(known), rep, waited, drained, lb.retried.Load(), summarize(rs))
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *proc) terminate(t testing.TB) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit within 60 s of SIGTERM", p.Name)
	}
	if p.Err() != nil {
		t.Errorf("%s exited with %v after SIGTERM", p.Name, p.Err())
	}
}

// ---------------------------------------------------------------------------
// A load balancer as real ones behave: it sends only to backends whose
// /readyz says 200 (checked every 100 ms), round robin, and retries a
// request on another backend when the connection is refused (nothing was
// sent). With no ready backend it answers the documented 503.

type balancer struct {
	url      string
	backends [3]atomic.Pointer[backend]
	next     atomic.Uint64
	retried  atomic.Int64
}

type backend struct {
	addr  string
	ready atomic.Bool
}

func newBalancer(t *testing.T) *balancer {
	b := &balancer{}
	transport := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "backend" },
		Transport:     roundTripFunc(func(r *http.Request) (*http.Response, error) { return b.roundTrip(transport, r) }),
		FlushInterval: -1, // event streams pass at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": "Service temporarily unavailable"})
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	b.url = "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	go b.check(ctx, transport)
	t.Cleanup(func() { stop(); srv.Close() })
	return b
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// errNoBackend: every backend is draining or down.
var errNoBackend = errors.New("no ready backend")

// roundTrip sends r to the next ready backend, and to the one after when
// the connection is refused. The body is buffered so that it can be resent.
func (b *balancer) roundTrip(t http.RoundTripper, r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
	}
	for range len(b.backends) {
		be := b.pick()
		if be == nil {
			return nil, errNoBackend
		}
		out := r.Clone(r.Context())
		out.URL.Host = be.addr
		out.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := t.RoundTrip(out)
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			be.ready.Store(false) // refused: try another; the check restores it
			b.retried.Add(1)
			continue
		}
		return resp, err
	}
	return nil, errNoBackend
}

func (b *balancer) pick() *backend {
	n := uint64(len(b.backends))
	start := b.next.Add(1)
	for i := range n {
		if be := b.backends[(start+i)%n].Load(); be != nil && be.ready.Load() {
			return be
		}
	}
	return nil
}

// set points slot i at addr (a restarted process listens elsewhere, as a
// new pod would); it takes traffic once its /readyz says 200.
func (b *balancer) set(i int, addr string) { b.backends[i].Store(&backend{addr: addr}) }

func (b *balancer) check(ctx context.Context, t http.RoundTripper) {
	hc := &http.Client{Transport: t, Timeout: time.Second}
	for ctx.Err() == nil {
		for i := range b.backends {
			be := b.backends[i].Load()
			if be == nil {
				continue
			}
			resp, err := hc.Get("http://" + be.addr + "/readyz")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			be.ready.Store(err == nil && resp.StatusCode == http.StatusOK)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (b *balancer) waitHealthy(t *testing.T, n int) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, fmt.Sprintf("%d backends ready", n), func() error {
		ready := 0
		for i := range b.backends {
			if be := b.backends[i].Load(); be != nil && be.ready.Load() {
				ready++
			}
		}
		if ready < n {
			return fmt.Errorf("%d of %d backends ready", ready, n)
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// Waiters: for every fifth created job, a client that long-polls it, and
// for every fifth one more, a client that streams it, each until it sees the
// job finished, reconnecting as clients do when a draining API ends its
// answer.

type waiters struct {
	giveUp   chan struct{} // closed when the test stops waiting
	wg       sync.WaitGroup
	started  atomic.Int64
	finished atomic.Int64
}

func startWaiters(ctx context.Context, c *client, created *ids, rec *recorder) *waiters {
	w := &waiters{giveUp: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		seen := 0
		for ctx.Err() == nil {
			all := created.list()
			for ; seen < len(all); seen++ {
				id := all[seen]
				switch seen % 5 {
				case 1:
					w.run(func(done <-chan struct{}) bool { return longPoll(c, id, rec, done) })
				case 3:
					w.run(func(done <-chan struct{}) bool { return stream(c, id, rec, done) })
				}
			}
			sleepCtx(ctx, 50*time.Millisecond)
		}
	}()
	return w
}

func (w *waiters) run(wait func(done <-chan struct{}) bool) {
	w.started.Add(1)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if wait(w.giveUp) {
			w.finished.Add(1)
		}
	}()
}

// wait waits for every waiter and reports how many saw their job finish;
// any that did not is an error.
func (w *waiters) wait(t *testing.T, within time.Duration) int64 {
	t.Helper()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Errorf("waiters still waiting %v after every job finished", within)
		close(w.giveUp)
	}
	if s, f := w.started.Load(), w.finished.Load(); s != f || s == 0 {
		t.Errorf("%d waiters, %d saw their job finish", s, f)
	}
	return w.finished.Load()
}

// longPoll waits for the job with waitSeconds and If-None-Match until it is
// finished.
func longPoll(c *client, id uuid.UUID, rec *recorder, done <-chan struct{}) bool {
	etag := ""
	for {
		select {
		case <-done:
			return false
		default:
		}
		hdr := []string{}
		if etag != "" {
			hdr = append(hdr, "If-None-Match", etag)
		}
		r := c.do(http.MethodGet, "/api/jobs/"+id.String()+"?waitSeconds=5", nil, hdr...)
		rec.add(r)
		if r.status == http.StatusOK {
			etag = r.hdr.Get("ETag")
			if j, ok := r.job(); ok && terminal(j.Status) {
				return true
			}
		} else if r.status != http.StatusNotModified {
			// A 503 or a transport error: a client's pause before it retries (the load's pace).
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// stream follows the job's event stream, reconnecting with Last-Event-ID,
// until it has seen the job finished (or a 204: nothing more will come).
func stream(c *client, id uuid.UUID, rec *recorder, done <-chan struct{}) bool {
	last := ""
	for {
		select {
		case <-done:
			return false
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, c.base+"/api/jobs/"+id.String()+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		start := time.Now()
		resp, err := c.hc.Do(req)
		if err != nil {
			rec.add(result{method: "GET", path: "/events", err: err, start: start, dur: time.Since(start)})
			// A client's pause before it reconnects (the load's pace).
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode == http.StatusNoContent {
			resp.Body.Close()
			return true
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rec.add(result{method: "GET", path: "/events", status: resp.StatusCode, body: b, hdr: resp.Header, start: start, dur: time.Since(start)})
			// A client's pause before it reconnects (the load's pace).
			time.Sleep(100 * time.Millisecond)
			continue
		}
		finished := false
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				last = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var j apiJob
				if json.Unmarshal([]byte(v), &j) == nil && terminal(j.Status) {
					finished = true
				}
			}
		}
		resp.Body.Close()
		if finished {
			return true
		}
	}
}
