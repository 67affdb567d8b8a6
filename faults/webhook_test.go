package faults

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// hookReceiver is a webhook receiver on loopback that verifies every
// delivery with the Standard Webhooks reference library and counts the
// accepted webhook-ids. Its answer follows mode: "ok" (204), "500", or
// "slow" (204 after a pause).
type hookReceiver struct {
	t        *testing.T
	secret   atomic.Value
	mode     atomic.Value
	requests atomic.Int64
	bad      atomic.Int64

	mu       sync.Mutex
	accepted map[string]int
	ln       net.Listener
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{t: t, accepted: map[string]int{}}
	r.mode.Store("ok")
	r.secret.Store("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.ln = ln
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	wh, err := standardwebhooks.NewWebhook(r.secret.Load().(string))
	if err == nil {
		err = wh.Verify(body, req.Header)
	}
	if err != nil {
		r.bad.Add(1)
		r.t.Errorf("delivery %s refused by the reference library: %v", req.Header.Get("webhook-id"), err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch r.mode.Load().(string) {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
		return
	case "slow":
		time.Sleep(700 * time.Millisecond)
	}
	r.mu.Lock()
	r.accepted[req.Header.Get("webhook-id")]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

// TestWebhooksSurviveAPIKill: jobs end under a worker while the receiver
// answers slowly, then 500s; the API process sending the events is
// SIGKILLed with attempts in flight, and another takes over. Every job has
// exactly one event recorded (the outbox emptied; one webhook-id per event
// however often it was sent), and every event reaches the receiver
// (verified by the reference library) at least once: none lost.
func TestWebhooksSurviveAPIKill(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	iss := newIssuer(t)
	rcv := newHookReceiver(t)
	hookEnv := []string{
		"JOBS_WEBHOOK_ALLOW_PRIVATE=true",
		"JOBS_WEBHOOK_TIMEOUT=1s",
		"JOBS_WEBHOOK_RETRY_SCHEDULE=100ms,200ms,300ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms",
		"JOBS_WEBHOOK_PER_ENDPOINT=4",
	}
	api1 := startServe(t, dbURL, iss, hookEnv...)
	c := newClient("http://"+api1.Addr, iss.token(keyA, "alice", true))
	r := c.do(http.MethodPost, "/api/webhooks", map[string]any{"url": "http://" + rcv.ln.Addr().String() + "/hook"})
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var ep struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(r.body, &ep); err != nil {
		t.Fatal(err)
	}
	rcv.secret.Store(ep.Secret)
	rcv.mode.Store("slow")
	startWorker(t, dbURL)

	const jobs = 60
	for i := range jobs {
		if r := c.create(prompt(i)); r.status != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	db := openDirect(t, dbURL)
	// Kill the sender while it holds attempts in flight (the receiver is
	// slow), after some events were delivered.
	eventually.True(t, 60*time.Second, "some events delivered, and attempts in flight", func() bool {
		return rcv.acceptedCount() >= 5 && rcv.requests.Load() > int64(rcv.acceptedCount())
	})
	api1.Kill()
	rcv.mode.Store("500")
	api2 := startServe(t, dbURL, iss, hookEnv...)
	eventually.True(t, 30*time.Second, "the new API's attempts failing with 500", func() bool {
		var n int
		_ = db.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE last_status_code = 500`)
		return n > 0
	})
	rcv.mode.Store("ok")
	waitAllTerminal(t, db, 60*time.Second)

	eventually.True(t, 90*time.Second, "every event delivered", func() bool {
		var left int
		// An event not yet attempted is in the outbox, not a delivery.
		_ = db.Get(&left, `SELECT (SELECT count(*) FROM webhook_deliveries WHERE status <> 'DELIVERED') + (SELECT count(*) FROM webhook_outbox)`)
		return left == 0
	})
	var ids []string
	if err := db.Select(&ids, `SELECT id::text FROM webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	var perJob []int
	if err := db.Select(&perJob, `SELECT count(d.id) FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id GROUP BY j.id`); err != nil {
		t.Fatal(err)
	}
	if len(perJob) != jobs {
		t.Fatalf("%d jobs, want %d", len(perJob), jobs)
	}
	for _, n := range perJob {
		if n != 1 {
			t.Fatalf("a job has %d events, want exactly 1: %v", n, perJob)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, id := range ids {
		if rcv.accepted[id] < 1 {
			t.Errorf("event %s never reached the receiver", id)
		}
	}
	dups := 0
	for _, n := range rcv.accepted {
		dups += n - 1
	}
	t.Logf("%d events, %d requests, %d accepted twice or more (at least once), the second API at %s", len(ids), rcv.requests.Load(), dups, api2.Addr)
	if b := rcv.bad.Load(); b != 0 {
		t.Errorf("%d deliveries failed verification", b)
	}
}
