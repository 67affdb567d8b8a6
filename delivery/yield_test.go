package delivery_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
)

// yieldSetup is a loop's database with one event of alice's waiting (an
// outbox row) and a queue backlog of bob's due jobs, and the loop's
// metrics.
type yieldSetup struct {
	setup
	rcv      *receiver
	endpoint *store.WebhookEndpoint
	reg      *prometheus.Registry
}

const yieldBacklog = 20

func newYieldSetup(t *testing.T) yieldSetup {
	t.Helper()
	s := yieldSetup{setup: newSetup(t), rcv: newReceiver(t), reg: prometheus.NewRegistry()}
	var secret string
	s.endpoint, secret = s.setup.endpoint(t, "alice", s.rcv.url())
	s.rcv.secrets = []string{secret}
	s.endJobs(t, "alice", 1, `{"output":"x"}`) // before the backlog: it claims every due job
	for range yieldBacklog {
		if _, _, err := s.st.Create(t.Context(), store.NewJob{UserID: "bob", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s yieldSetup) run(t *testing.T, backlog int, maxWait time.Duration) {
	t.Helper()
	s.setup.run(t, delivery.Config{YieldBacklog: backlog, YieldMax: maxWait, Metrics: metrics.NewWebhooks(s.reg)})
}

// metric is the value of the registry's gauge or counter name.
func (s yieldSetup) metric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (s yieldSetup) outboxRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := s.st.DB().Get(&n, `SELECT count(*) FROM webhook_outbox`); err != nil {
		t.Fatal(err)
	}
	return n
}

// delivered is the endpoint's one delivery, once DELIVERED.
func (s yieldSetup) delivered(t *testing.T, within time.Duration) store.WebhookDelivery {
	t.Helper()
	var d store.WebhookDelivery
	waitFor(t, within, func() bool {
		ds, err := s.st.ListDeliveries(t.Context(), store.OwnedBy("alice"), s.endpoint.ID, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].Status == store.DeliveryDelivered {
			d = ds[0]
			return true
		}
		return false
	}, "the event delivered")
	if n := len(s.rcv.acceptedIDs()); n != 1 {
		t.Fatalf("the receiver accepted %d events, want 1", n)
	}
	return d
}

// TestYieldsToQueueBacklog: with at least JOBS_WEBHOOK_YIELD_BACKLOG jobs
// due and unclaimed, the loop claims nothing, and the event is delivered
// once the backlog is gone.
func TestYieldsToQueueBacklog(t *testing.T) {
	s := newYieldSetup(t)
	s.run(t, yieldBacklog, time.Hour)

	waitFor(t, 10*time.Second, func() bool { return s.metric(t, "jobsd_webhook_yielded_seconds_total") >= 1 }, "the loop yielding for a second")
	if n := s.rcv.requests.Load(); n != 0 {
		t.Fatalf("%d requests sent while the queue had a backlog", n)
	}
	if n := s.outboxRows(t); n != 1 {
		t.Fatalf("%d outbox rows while yielding, want the 1 unclaimed", n)
	}
	if g := s.metric(t, "jobsd_webhook_yielding"); g != 1 {
		t.Errorf("jobsd_webhook_yielding = %v while yielding, want 1", g)
	}

	if claimed, _, err := s.st.Claim(t.Context(), store.ClaimRequest{Worker: "w", N: yieldBacklog, Lease: time.Minute}); err != nil || len(claimed) != yieldBacklog {
		t.Fatalf("claim the backlog: %d jobs, %v", len(claimed), err)
	}
	s.delivered(t, 10*time.Second)
	waitFor(t, 5*time.Second, func() bool { return s.metric(t, "jobsd_webhook_yielding") == 0 }, "jobsd_webhook_yielding back to 0")
}

// TestYieldIsBounded: with the backlog kept, the event is delivered once
// it has waited JOBS_WEBHOOK_YIELD_MAX, and not before.
func TestYieldIsBounded(t *testing.T) {
	s := newYieldSetup(t)
	const maxWait = time.Second
	s.run(t, yieldBacklog, maxWait)

	d := s.delivered(t, 10*time.Second)
	if d.LastAttemptAt == nil {
		t.Fatalf("delivery without its attempt: %+v", d)
	}
	// The store's clock decided (now() - occurred_at >= maxWait) before the
	// attempt started; a millisecond for the timestamps' rounding.
	if waited := d.LastAttemptAt.Sub(d.OccurredAt); waited < maxWait-time.Millisecond {
		t.Errorf("sent %v after the job ended despite the backlog, want at least %v", waited, maxWait)
	}
	if y := s.metric(t, "jobsd_webhook_yielded_seconds_total"); y <= 0 {
		t.Errorf("jobsd_webhook_yielded_seconds_total = %v, want above 0", y)
	}
	if backlog, err := s.st.QueueBacklog(t.Context(), yieldBacklog); err != nil || !backlog {
		t.Fatalf("the backlog is gone (%v, %v): the test proves nothing", backlog, err)
	}
}

// TestYieldOff: JOBS_WEBHOOK_YIELD_BACKLOG=0 sends at once despite the
// backlog.
func TestYieldOff(t *testing.T) {
	s := newYieldSetup(t)
	s.run(t, 0, time.Hour)

	s.delivered(t, 10*time.Second)
	if y := s.metric(t, "jobsd_webhook_yielded_seconds_total"); y != 0 {
		t.Errorf("jobsd_webhook_yielded_seconds_total = %v with yielding off, want 0", y)
	}
}
