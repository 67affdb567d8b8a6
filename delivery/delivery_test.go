package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/webhook"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// receiver is a webhook receiver that checks every delivery's signature
// with the Standard Webhooks reference library and with webhook.Verify,
// and counts what it accepted by webhook-id. mode decides its answer.
type receiver struct {
	t       *testing.T
	secrets []string // each must verify every delivery
	mode    atomic.Value
	slow    time.Duration

	mu       sync.Mutex
	accepted map[string]int         // webhook-id -> 2xx answers
	bodies   map[string]deliveredEv // webhook-id -> last body
	requests atomic.Int64
	conns    atomic.Int64 // connections accepted

	addr string
	srv  *http.Server
}

type deliveredEv struct {
	Type          string          `json:"type"`
	Timestamp     string          `json:"timestamp"`
	Data          json.RawMessage `json:"data"`
	ResultOmitted bool            `json:"resultOmitted"`
}

// The receiver's modes.
const (
	modeOK    = "ok"
	modeError = "500"
	modeSlow  = "slow"
	modeGone  = "410"
)

func newReceiver(t *testing.T, secrets ...string) *receiver {
	t.Helper()
	r := &receiver{t: t, secrets: secrets, accepted: map[string]int{}, bodies: map[string]deliveredEv{}, slow: 2 * time.Second}
	r.mode.Store(modeOK)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(ln net.Listener) {
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				r.conns.Add(1)
			}
		}}
	go func() { _ = r.srv.Serve(ln) }()
}

// down stops listening: connections are refused.
func (r *receiver) down() {
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

// up listens again on the same address.
func (r *receiver) up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	waitFor(t, 10*time.Second, func() bool {
		var err error
		ln, err = net.Listen("tcp", r.addr)
		return err == nil
	}, "listen again on "+r.addr)
	r.serve(ln)
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, s := range r.secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			r.t.Errorf("reference library: secret: %v", err)
			return
		}
		if err := wh.Verify(body, req.Header); err != nil {
			r.t.Errorf("reference library refused delivery %s: %v", req.Header.Get("webhook-id"), err)
		}
		if err := webhook.Verify(s, req.Header, body); err != nil {
			r.t.Errorf("webhook.Verify refused delivery %s: %v", req.Header.Get("webhook-id"), err)
		}
	}
	switch r.mode.Load().(string) {
	case modeError:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case modeGone:
		w.WriteHeader(http.StatusGone)
		return
	case modeSlow:
		select {
		case <-time.After(r.slow):
		case <-req.Context().Done():
			return
		}
	}
	var ev deliveredEv
	if err := json.Unmarshal(body, &ev); err != nil {
		r.t.Errorf("delivery body %q: %v", body, err)
	}
	if err := checkEventSchema(body); err != nil {
		r.t.Errorf("delivery body does not match openapi.yaml's WebhookEvent: %v\n%s", err, body)
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	r.accepted[id]++
	r.bodies[id] = ev
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) acceptedIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.accepted))
	for k, v := range r.accepted {
		out[k] = v
	}
	return out
}

type setup struct {
	st     *store.Store
	sealer *webhook.Sealer
}

func newSetup(t *testing.T) setup {
	t.Helper()
	st, _ := pgtest.NewStore(t)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	sealer, err := webhook.NewSealer(base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	return setup{st: st, sealer: sealer}
}

// endpoint registers url for user and returns it with its secret.
func (s setup) endpoint(t *testing.T, user, url string) (*store.WebhookEndpoint, string) {
	t.Helper()
	secret, sealed := s.secret(t)
	e, err := s.st.CreateWebhook(t.Context(), store.NewWebhook{UserID: user, URL: url, EventTypes: []string{store.EventJobCompleted, store.EventJobFailed}, Secret: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return e, secret
}

func (s setup) secret(t *testing.T) (string, []byte) {
	t.Helper()
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := webhook.ParseSecret(secret)
	sealed, err := s.sealer.Seal(k)
	if err != nil {
		t.Fatal(err)
	}
	return secret, sealed
}

// endJobs creates n jobs of user and ends them through the worker's
// statements (claim, then the outcome batch): completed with result, or
// failed every third one.
func (s setup) endJobs(t *testing.T, user string, n int, result string) []uuid.UUID {
	t.Helper()
	ctx := t.Context()
	var ids []uuid.UUID
	for range n {
		j, _, err := s.st.Create(ctx, store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for ended := 0; ended < n; {
		claimed, _, err := s.st.Claim(ctx, store.ClaimRequest{Worker: "w", N: n, Lease: time.Minute})
		if err != nil || len(claimed) == 0 {
			t.Fatalf("claim: %d, %v", len(claimed), err)
		}
		outs := make([]store.Outcome, len(claimed))
		for i, c := range claimed {
			outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(result)}
			if (ended+i)%3 == 2 {
				outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeFailed, Error: "Bedrock API error: boom"}
			}
		}
		if _, err := s.st.Finish(ctx, outs); err != nil {
			t.Fatal(err)
		}
		ended += len(claimed)
	}
	return ids
}

func (s setup) run(t *testing.T, cfg delivery.Config) {
	t.Helper()
	cfg.Store, cfg.Sealer, cfg.AllowPrivate, cfg.EncodeJob = s.st, s.sealer, true, impl.WebhookJSON
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if testing.Verbose() {
		cfg.Log = slog.Default()
	} else {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { delivery.Run(ctx, cfg); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func deliveryIDs(t *testing.T, st *store.Store, endpoint uuid.UUID) map[string]string {
	t.Helper()
	var rows []struct {
		ID     string `db:"id"`
		Status string `db:"status"`
	}
	if err := st.DB().Select(&rows, `SELECT id, status FROM webhook_deliveries WHERE endpoint_id = $1`, endpoint); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.ID] = r.Status
	}
	return out
}

// TestDeliversSignedEvents: every job's end reaches its owner's endpoint,
// signed (verified by the reference library), its data exactly the bytes
// GET /api/jobs/{id} answers; another user's endpoint gets nothing; each
// delivery ends DELIVERED with its attempt recorded.
func TestDeliversSignedEvents(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	e, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	other := newReceiver(t)
	s.endpoint(t, "bob", other.url())
	s.run(t, delivery.Config{})

	ids := s.endJobs(t, "alice", 9, `{"output":"done <ok> & \u00e9"}`)
	waitFor(t, 20*time.Second, func() bool { return len(rcv.acceptedIDs()) == 9 }, "9 events delivered")

	got := map[uuid.UUID]deliveredEv{}
	rcv.mu.Lock()
	for _, ev := range rcv.bodies {
		var j struct {
			ID uuid.UUID `json:"id"`
		}
		if err := json.Unmarshal(ev.Data, &j); err != nil {
			t.Fatal(err)
		}
		got[j.ID] = ev
	}
	rcv.mu.Unlock()
	for _, id := range ids {
		ev, ok := got[id]
		if !ok {
			t.Fatalf("no event for job %s", id)
		}
		j, err := s.st.Get(t.Context(), store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := impl.WebhookJSON(j)
		if !bytes.Equal(ev.Data, want) {
			t.Errorf("data of %s:\n got %s\nwant %s", id, ev.Data, want)
		}
		wantType := "job.completed"
		if j.Status == job.StatusFailed {
			wantType = "job.failed"
		}
		if ev.Type != wantType || ev.ResultOmitted || !strings.HasSuffix(ev.Timestamp, "Z") || len(ev.Timestamp) != 24 {
			t.Errorf("event of %s: type %q (want %q), timestamp %q, resultOmitted %v", id, ev.Type, wantType, ev.Timestamp, ev.ResultOmitted)
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		for _, st := range deliveryIDs(t, s.st, e.ID) {
			if st != store.DeliveryDelivered {
				return false
			}
		}
		return true
	}, "every delivery recorded as DELIVERED")
	if n := other.requests.Load(); n != 0 {
		t.Errorf("bob's endpoint got %d requests for alice's jobs", n)
	}
	ds, err := s.st.ListDeliveries(t.Context(), store.OwnedBy("alice"), e.ID, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Attempts != 1 || d.LastStatusCode == nil || *d.LastStatusCode != 204 || d.LastLatencyMs == nil || d.NextAttemptAt != nil {
			t.Errorf("delivery record: %+v", d)
		}
	}
}

// TestReceiverOutageLosesNothing: the receiver is down (connections
// refused), then answers 500, then answers too slowly, then comes back,
// while jobs keep ending; some claims are also left by a "dead" sender.
// Every event is delivered, each webhook-id at least once, none lost, and
// every delivery ends DELIVERED.
func TestReceiverOutageLosesNothing(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	e, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	rcv.slow = time.Second

	// A sender that claimed and died: its claims come due again after
	// their lease.
	s.endJobs(t, "alice", 5, `{"output":"x"}`)
	if dead, err := s.st.ClaimOutbox(t.Context(), 5, time.Second); err != nil || len(dead) != 1 || len(dead[0].Events) != 5 {
		t.Fatalf("the dead sender's claim: %d outbox rows, %v", len(dead), err)
	}

	rcv.down()
	s.run(t, delivery.Config{
		Timeout:     300 * time.Millisecond,
		Schedule:    []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		Disable:     store.DisablePolicy{MinFailures: 1000, After: time.Hour},
		PerEndpoint: 2,
	})
	failedAttempts := func() int {
		var n int
		if err := s.st.DB().Get(&n, `SELECT consecutive_failures FROM webhook_endpoints WHERE id = $1`, e.ID); err != nil {
			t.Fatal(err)
		}
		return n
	}
	phase := func(name string, jobs int) {
		before := failedAttempts()
		s.endJobs(t, "alice", jobs, `{"output":"x"}`)
		waitFor(t, 20*time.Second, func() bool { return failedAttempts() >= before+3 }, "attempts failing while "+name)
	}
	phase("down", 20)
	rcv.up(t)
	rcv.mode.Store(modeError)
	phase("answering 500", 20)
	rcv.mode.Store(modeSlow)
	phase("answering too slowly", 20)
	rcv.mode.Store(modeOK)
	s.endJobs(t, "alice", 20, `{"output":"x"}`)

	waitFor(t, 60*time.Second, func() bool {
		for _, st := range deliveryIDs(t, s.st, e.ID) {
			if st != store.DeliveryDelivered {
				return false
			}
		}
		return true
	}, "every delivery DELIVERED")
	want := deliveryIDs(t, s.st, e.ID)
	if len(want) != 85 {
		t.Fatalf("%d deliveries queued, want 85 (one per job)", len(want))
	}
	got := rcv.acceptedIDs()
	for id := range want {
		if got[id] < 1 {
			t.Errorf("webhook-id %s never accepted by the receiver", id)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("the receiver accepted an unknown webhook-id %s", id)
		}
	}
	t.Logf("%d events, %d requests, %d failed attempts before recovery", len(want), rcv.requests.Load(), failedAttempts())
}

// TestGoneDisablesEndpoint: a 410 disables the endpoint with its reason,
// and its other pending events end FAILED without being sent.
func TestGoneDisablesEndpoint(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	rcv.mode.Store(modeGone)
	e, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	s.endJobs(t, "alice", 3, `{"output":"x"}`)
	s.run(t, delivery.Config{PerEndpoint: 1})
	waitFor(t, 20*time.Second, func() bool {
		got, err := s.st.GetWebhook(t.Context(), store.OwnedBy("alice"), e.ID)
		return err == nil && !got.Enabled
	}, "endpoint disabled")
	got, _ := s.st.GetWebhook(t.Context(), store.OwnedBy("alice"), e.ID)
	if got.DisabledReason == nil || !strings.Contains(*got.DisabledReason, "410") {
		t.Errorf("reason: %v", got.DisabledReason)
	}
	waitFor(t, 10*time.Second, func() bool {
		for _, st := range deliveryIDs(t, s.st, e.ID) {
			if st != store.DeliveryFailed {
				return false
			}
		}
		return true
	}, "every delivery FAILED")
	if n := rcv.requests.Load(); n != 1 {
		t.Errorf("%d requests after a 410, want 1", n)
	}
}

// TestLargeResultOmitted: a result above MaxResultBytes is left out, with
// resultOmitted; the job's other fields are sent.
func TestLargeResultOmitted(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	_, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	s.run(t, delivery.Config{MaxResultBytes: 100})
	ids := s.endJobs(t, "alice", 1, `{"output":"`+strings.Repeat("x", 200)+`"}`)
	waitFor(t, 20*time.Second, func() bool { return len(rcv.acceptedIDs()) == 1 }, "delivered")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, ev := range rcv.bodies {
		if !ev.ResultOmitted || !bytes.Contains(ev.Data, []byte(`"result":null`)) || !bytes.Contains(ev.Data, []byte(ids[0].String())) || !bytes.Contains(ev.Data, []byte(`"status":"COMPLETED"`)) {
			t.Errorf("event: %+v %s", ev, ev.Data)
		}
	}
}

// TestRotationSignsWithBoth: after a rotation, deliveries carry both
// signatures, and a receiver with either secret verifies them; a test
// event's data names the endpoint.
func TestRotationSignsWithBoth(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	e, oldSecret := s.endpoint(t, "alice", rcv.url())
	newSecret, sealed := s.secret(t)
	if _, err := s.st.RotateWebhookSecret(t.Context(), store.OwnedBy("alice"), e.ID, sealed, time.Hour); err != nil {
		t.Fatal(err)
	}
	rcv.secrets = []string{oldSecret, newSecret}
	d, err := s.st.QueueTestDelivery(t.Context(), store.OwnedBy("alice"), e.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.run(t, delivery.Config{})
	waitFor(t, 20*time.Second, func() bool { return rcv.acceptedIDs()[d.ID.String()] == 1 }, "test event delivered")
	rcv.mu.Lock()
	ev := rcv.bodies[d.ID.String()]
	rcv.mu.Unlock()
	if ev.Type != "webhook.test" || string(ev.Data) != `{"webhookId":"`+e.ID.String()+`"}` {
		t.Errorf("test event: %+v %s", ev, ev.Data)
	}
}

// eventSchema is openapi.yaml's WebhookEvent, the documented body.
var eventSchema = sync.OnceValues(func() (*openapi3.Schema, error) {
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		return nil, err
	}
	ref := doc.Components.Schemas["WebhookEvent"]
	if ref == nil || ref.Value == nil {
		return nil, errors.New("openapi.yaml has no WebhookEvent schema")
	}
	return ref.Value, nil
})

// checkEventSchema validates a delivery's body against WebhookEvent.
func checkEventSchema(body []byte) error {
	schema, err := eventSchema()
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return schema.VisitJSON(v)
}

// waitFor waits for cond, failing the test with what after within.
func waitFor(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	eventually.True(t, within, what, cond)
}

// TestDeletedJobAndUnopenableSecret: a job deleted before its outbox row
// is expanded gives no event (the row is consumed); a retry whose job was
// deleted ends FAILED at once, with the reason; an endpoint whose secret
// this process cannot open (another JOBS_WEBHOOK_KEY) is retried, not
// given up, and nothing unsigned is sent.
func TestDeletedJobAndUnopenableSecret(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	e, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	ids := s.endJobs(t, "alice", 1, `{"output":"x"}`)
	if _, err := s.st.DB().Exec(`DELETE FROM jobs WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	// A retry queued before the job was deleted (retention).
	if _, err := s.st.DB().Exec(`INSERT INTO webhook_deliveries (endpoint_id, event_type, job_id, attempts) VALUES ($1, 'job.completed', $2, 1)`, e.ID, ids[0]); err != nil {
		t.Fatal(err)
	}
	other := newReceiver(t)
	o, _ := s.endpoint(t, "bob", other.url())
	if _, err := s.st.DB().Exec(`UPDATE webhook_endpoints SET secret = '\x01000000'::bytea WHERE id = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	d, err := s.st.QueueTestDelivery(t.Context(), store.OwnedBy("bob"), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.run(t, delivery.Config{Schedule: []time.Duration{time.Hour}})
	waitFor(t, 20*time.Second, func() bool {
		ds, err := s.st.ListDeliveries(t.Context(), store.OwnedBy("alice"), e.ID, 10, nil)
		return err == nil && len(ds) == 1 && ds[0].Status == store.DeliveryFailed
	}, "the deleted job's retry FAILED")
	ds, _ := s.st.ListDeliveries(t.Context(), store.OwnedBy("alice"), e.ID, 10, nil)
	if ds[0].Attempts != 2 || ds[0].LastError == nil || !strings.Contains(*ds[0].LastError, "no longer exists") {
		t.Errorf("deleted job's delivery: %+v", ds[0])
	}
	waitFor(t, 20*time.Second, func() bool {
		var n int
		return s.st.DB().Get(&n, `SELECT count(*) FROM webhook_outbox`) == nil && n == 0
	}, "the outbox row of the deleted job consumed")
	waitFor(t, 20*time.Second, func() bool {
		ds, err := s.st.ListDeliveries(t.Context(), store.OwnedBy("bob"), o.ID, 10, nil)
		return err == nil && len(ds) == 1 && ds[0].Attempts == 1 && ds[0].LastError != nil
	}, "the unopenable secret's attempt recorded")
	ds, _ = s.st.ListDeliveries(t.Context(), store.OwnedBy("bob"), o.ID, 10, nil)
	if ds[0].ID != d.ID || ds[0].Status != store.DeliveryPending || ds[0].NextAttemptAt == nil || !strings.Contains(*ds[0].LastError, "JOBS_WEBHOOK_KEY") {
		t.Errorf("unopenable secret's delivery: %+v (error %v)", ds[0], *ds[0].LastError)
	}
	if ds, _ := s.st.ListDeliveries(t.Context(), store.OwnedBy("alice"), e.ID, 10, nil); len(ds) != 1 {
		t.Errorf("alice's deliveries: %d, want only the retry (the deleted job's outbox event is none)", len(ds))
	}
	if n := other.requests.Load() + rcv.requests.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestCrashBetweenSendAndRecordResendsSameID: a sender whose record of an
// outbox row fails after the requests were answered (as if it died between
// the send and the record) leaves the row claimed until its lease runs
// out; it is then sent again, every event with the webhook-id of its first
// send, and recorded once, DELIVERED.
func TestCrashBetweenSendAndRecordResendsSameID(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t)
	e, secret := s.endpoint(t, "alice", rcv.url())
	rcv.secrets = []string{secret}
	// The first record fails: its transaction, and every row it wrote, is
	// rolled back (a sequence is not, so only the first one fails).
	if _, err := s.st.DB().Exec(`
		CREATE SEQUENCE crash_once;
		CREATE FUNCTION crash_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('crash_once') = 1 THEN RAISE EXCEPTION 'the sender died'; END IF;
			RETURN OLD;
		END $$;
		CREATE TRIGGER crash_once BEFORE DELETE ON webhook_outbox FOR EACH ROW EXECUTE FUNCTION crash_once();`); err != nil {
		t.Fatal(err)
	}
	ids := s.endJobs(t, "alice", 6, `{"output":"x"}`)
	// Timeout 200ms: the outbox row's claim holds it claimLease = 5.4 s.
	s.run(t, delivery.Config{Timeout: 200 * time.Millisecond})
	waitFor(t, 30*time.Second, func() bool {
		d := deliveryIDs(t, s.st, e.ID)
		for _, st := range d {
			if st != store.DeliveryDelivered {
				return false
			}
		}
		return len(d) == 6
	}, "every event recorded DELIVERED after the claim ran out")
	var crashes int64
	if err := s.st.DB().Get(&crashes, `SELECT last_value FROM crash_once`); err != nil || crashes < 2 {
		t.Fatalf("the outbox row was deleted %d times (want the failed one, then the one that held), %v", crashes, err)
	}
	accepted := rcv.acceptedIDs()
	recorded := deliveryIDs(t, s.st, e.ID)
	for id := range recorded {
		if accepted[id] != 2 {
			t.Errorf("webhook-id %s accepted %d times, want 2 (sent, then sent again with the same id)", id, accepted[id])
		}
	}
	if len(accepted) != 6 {
		t.Errorf("the receiver saw %d webhook-ids, want 6 (one per event)", len(accepted))
	}
	for _, id := range ids {
		j, err := s.st.Get(t.Context(), store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		typ := store.EventJobCompleted
		if j.Status == job.StatusFailed {
			typ = store.EventJobFailed
		}
		if want := store.EventID(e.ID, id, typ, *j.CompletedAt); recorded[want.String()] == "" {
			t.Errorf("job %s: no delivery with the webhook-id %s", id, want)
		}
	}
}

// TestSlowEndpointDelaysOnlyItself: while one endpoint holds every attempt
// it is allowed for seconds at a time, with a backlog behind it, another
// user's events are delivered at once.
func TestSlowEndpointDelaysOnlyItself(t *testing.T) {
	s := newSetup(t)
	slow := newReceiver(t)
	slow.mode.Store(modeSlow)
	slow.slow = 3 * time.Second
	_, slowSecret := s.endpoint(t, "alice", slow.url())
	slow.secrets = []string{slowSecret}
	fast := newReceiver(t)
	_, fastSecret := s.endpoint(t, "bob", fast.url())
	fast.secrets = []string{fastSecret}

	s.endJobs(t, "alice", 30, `{"output":"x"}`)
	s.run(t, delivery.Config{Timeout: 10 * time.Second, PerEndpoint: 2, Concurrency: 4})
	waitFor(t, 10*time.Second, func() bool { return slow.requests.Load() >= 2 }, "the slow endpoint's attempts in flight")
	start := time.Now()
	s.endJobs(t, "bob", 5, `{"output":"x"}`)
	waitFor(t, 10*time.Second, func() bool { return len(fast.acceptedIDs()) == 5 }, "bob's events delivered")
	took := time.Since(start)
	// Generous: the slow endpoint answers after 3 s; bob's events must not
	// wait for even one of its answers.
	if took >= 2500*time.Millisecond {
		t.Errorf("bob's events took %v behind alice's slow endpoint", took)
	}
	t.Logf("bob's 5 events delivered %v after their jobs ended, alice's slow endpoint busy (%d requests so far)", took.Round(time.Millisecond), slow.requests.Load())
}

// TestEndpointsOnOneHostShareConnections: the endpoints of many users on
// one host (a platform that receives webhooks for its tenants) are sent to
// over kept-alive connections, about as many opened as attempts can be in
// flight at once (Concurrency). Keeping only PerEndpoint connections
// idle per host, the client opened and closed one for most requests.
func TestEndpointsOnOneHostShareConnections(t *testing.T) {
	s := newSetup(t)
	rcv := newReceiver(t) // no secrets: each user's endpoint signs with its own
	const users, perUser = 40, 25
	for u := range users {
		s.endpoint(t, fmt.Sprintf("tenant-%d", u), rcv.url())
	}
	for u := range users {
		s.endJobs(t, fmt.Sprintf("tenant-%d", u), perUser, `{"output":"x"}`)
	}
	s.run(t, delivery.Config{})
	waitFor(t, 30*time.Second, func() bool { return len(rcv.acceptedIDs()) == users*perUser }, "every event delivered")
	// At most Concurrency attempts are in flight, but net/http may dial for
	// a request while another's connection is on its way back to the pool
	// (it then keeps both): a few more than Concurrency are fine, one per
	// request (686 of these 1,000 before) is not.
	if n := rcv.conns.Load(); n > 3*delivery.DefaultConcurrency {
		t.Errorf("%d events to %d endpoints on one host opened %d connections; at most %d attempts are in flight at once",
			users*perUser, users, n, delivery.DefaultConcurrency)
	}
	t.Logf("%d events, %d endpoints on one host: %d connections", users*perUser, users, rcv.conns.Load())
}

// TestTwoDeliverersShareTheOutbox: two delivery loops on one database (two
// jobsd deliver processes, or two APIs) send every event of jobs ended in
// many statements, to the endpoints of several users, and each event
// (endpoint, job, type) is recorded once, DELIVERED, and reaches its
// receiver (verified by the reference library) at least once.
func TestTwoDeliverersShareTheOutbox(t *testing.T) {
	s := newSetup(t)
	const users, perUser, rounds = 3, 2, 8
	type hook struct {
		rcv *receiver
		id  uuid.UUID
	}
	var hooks []hook
	for u := range users {
		for range perUser {
			rcv := newReceiver(t)
			e, secret := s.endpoint(t, fmt.Sprintf("user-%d", u), rcv.url())
			rcv.secrets = []string{secret}
			hooks = append(hooks, hook{rcv, e.ID})
		}
	}
	s.run(t, delivery.Config{})
	s.run(t, delivery.Config{})

	jobs := 0
	for r := range rounds { // one outbox row per statement that ends jobs
		for u := range users {
			jobs += len(s.endJobs(t, fmt.Sprintf("user-%d", u), 1+r%3, `{"output":"x"}`))
		}
	}
	wantEvents := jobs * perUser
	delivered := `SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED'`
	waitFor(t, 60*time.Second, func() bool {
		var n, outbox int
		_ = s.st.DB().Get(&n, delivered)
		_ = s.st.DB().Get(&outbox, `SELECT count(*) FROM webhook_outbox`)
		return n == wantEvents && outbox == 0
	}, fmt.Sprintf("%d events DELIVERED and the outbox empty", wantEvents))

	var twice, rows int
	if err := s.st.DB().Get(&twice, `SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries
		GROUP BY endpoint_id, job_id, event_type HAVING count(*) > 1) d`); err != nil || twice != 0 {
		t.Errorf("%d events recorded more than once (%v)", twice, err)
	}
	if err := s.st.DB().Get(&rows, `SELECT count(*) FROM webhook_deliveries`); err != nil || rows != wantEvents {
		t.Errorf("%d delivery rows, want %d (%v)", rows, wantEvents, err)
	}
	for _, h := range hooks {
		ids := deliveryIDs(t, s.st, h.id)
		accepted := h.rcv.acceptedIDs()
		if len(ids) != jobs/users {
			t.Errorf("endpoint %s: %d deliveries, want %d", h.id, len(ids), jobs/users)
		}
		for id := range ids {
			if accepted[id] < 1 {
				t.Errorf("endpoint %s: delivery %s recorded, never accepted by the receiver", h.id, id)
			}
		}
	}
}
