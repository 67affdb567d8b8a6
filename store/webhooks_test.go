package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/notify"
	"github.com/jobsd/jobsd/store"
)

func newWebhook(t *testing.T, st *store.Store, user string, types ...string) *store.WebhookEndpoint {
	t.Helper()
	if len(types) == 0 {
		types = []string{store.EventJobCompleted, store.EventJobFailed}
	}
	e, err := st.CreateWebhook(t.Context(), store.NewWebhook{UserID: user, URL: "https://hooks.example/" + user, EventTypes: types, Secret: []byte{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type eventRow struct {
	Endpoint uuid.UUID `db:"endpoint_id"`
	Type     string    `db:"event_type"`
	Job      uuid.UUID `db:"job_id"`
}

// events claims every outbox row and returns its events (the outbox is
// expanded when claimed), and checks that each statement wrote one row.
func events(t *testing.T, st *store.Store, wantRows int) []eventRow {
	t.Helper()
	batches, err := st.ClaimOutbox(t.Context(), 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != wantRows {
		t.Errorf("%d outbox rows, want %d (one per statement that ended jobs)", len(batches), wantRows)
	}
	var out []eventRow
	for _, b := range batches {
		for _, ev := range b.Events {
			out = append(out, eventRow{ev.EndpointID, ev.EventType, ev.Job.ID})
			if want := store.EventID(ev.EndpointID, ev.Job.ID, ev.EventType, *ev.Job.CompletedAt); ev.ID != want {
				t.Errorf("event id %s, want %s", ev.ID, want)
			}
		}
	}
	return out
}

// TestJobEndsWriteWebhookEvents: each statement that ends jobs (completed,
// failed, cancelled, lost on its last attempt) writes one outbox row, which
// expands to one event per enabled endpoint of the job's owner that takes
// the event type; retries, other users' endpoints and disabled ones get
// none.
func TestJobEndsWriteWebhookEvents(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	both := newWebhook(t, st, "alice")
	onlyFailed := newWebhook(t, st, "alice", store.EventJobFailed)
	off := newWebhook(t, st, "alice")
	f := false
	if _, err := st.UpdateWebhook(ctx, store.OwnedBy("alice"), off.ID, store.WebhookUpdate{Enabled: &f}); err != nil {
		t.Fatal(err)
	}
	newWebhook(t, st, "bob")

	create := func(user string, maxAttempts int) uuid.UUID {
		j, _, err := st.Create(ctx, store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`), MaxAttempts: maxAttempts})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	completed, failed, retried, lost := create("alice", 3), create("alice", 3), create("alice", 3), create("alice", 1)
	cancelled := create("alice", 3)
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 4, Lease: time.Minute})
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	lease := map[uuid.UUID]uuid.UUID{}
	for _, c := range claimed {
		lease[c.ID] = c.Lease
	}
	if _, err := st.Finish(ctx, []store.Outcome{
		{ID: completed, Lease: lease[completed], Kind: store.OutcomeCompleted, Result: []byte(`{"output":"x"}`)},
		{ID: failed, Lease: lease[failed], Kind: store.OutcomeFailed, Error: "boom"},
		{ID: retried, Lease: lease[retried], Kind: store.OutcomeRetry, Error: "again", Backoff: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Cancel(ctx, store.OwnedBy("alice"), cancelled); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`UPDATE job_leases SET expires_at = now() - interval '1 second' WHERE lease = $1`, lease[lost]); err != nil {
		t.Fatal(err)
	}
	if _, failedN, err := st.Rescue(ctx, time.Second); err != nil || failedN != 1 {
		t.Fatalf("rescue: %d failed, %v", failedN, err)
	}
	want := []eventRow{
		{both.ID, store.EventJobCompleted, completed},
		{both.ID, store.EventJobFailed, failed},
		{onlyFailed.ID, store.EventJobFailed, failed},
		{both.ID, store.EventJobFailed, cancelled},
		{onlyFailed.ID, store.EventJobFailed, cancelled},
		{both.ID, store.EventJobFailed, lost},
		{onlyFailed.ID, store.EventJobFailed, lost},
	}
	got := events(t, st, 3)
	less := func(a, b eventRow) bool {
		if a.Job != b.Job {
			return a.Job.String() < b.Job.String()
		}
		return a.Endpoint.String() < b.Endpoint.String()
	}
	if diff := cmp.Diff(sortedEvents(want, less), sortedEvents(got, less)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// TestOutboxRowCuesDelivery: a statement that writes an outbox row sends
// one notification on the delivery loops' channel, whatever the number of
// jobs it ended; one that ends no job (a retry) writes no row and sends
// none. Each check ends with a notification of the test's own, sent after
// the statement committed: notifications arrive in commit order, so
// whatever arrived before it is all the statement sent.
func TestOutboxRowCuesDelivery(t *testing.T) {
	st, url := pgtest.NewStore(t)
	ctx := t.Context()
	newWebhook(t, st, "alice")
	l := pq.NewListener(url, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { _ = l.Close() })
	if err := l.Listen(notify.WebhookDeliveries); err != nil {
		t.Fatal(err)
	}
	// cues returns how many notifications the statements before it sent.
	cues := func() int {
		t.Helper()
		if _, err := st.DB().Exec(`SELECT pg_notify($1, 'sentinel')`, notify.WebhookDeliveries); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			select {
			case m := <-l.Notify:
				if m == nil { // reconnected: notifications may be lost
					t.Fatal("the listening connection was lost")
				}
				if m.Extra == "sentinel" {
					return n
				}
				n++
			case <-time.After(10 * time.Second):
				t.Fatal("no sentinel notification within 10 s")
			}
		}
	}
	if n := cues(); n != 0 {
		t.Fatalf("%d notifications before any job ended", n)
	}
	createJobs(t, st, 3)
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 3, Lease: time.Minute})
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	outcome := func(c store.Claimed, kind store.OutcomeKind) store.Outcome {
		return store.Outcome{ID: c.ID, Lease: c.Lease, Kind: kind, Result: []byte(`{"output":"x"}`), Error: "e", Backoff: time.Hour}
	}
	if _, err := st.Finish(ctx, []store.Outcome{outcome(claimed[0], store.OutcomeRetry)}); err != nil {
		t.Fatal(err)
	}
	if n := cues(); n != 0 {
		t.Errorf("a statement that ended no job sent %d notifications, want 0", n)
	}
	if _, err := st.Finish(ctx, []store.Outcome{outcome(claimed[1], store.OutcomeCompleted), outcome(claimed[2], store.OutcomeFailed)}); err != nil {
		t.Fatal(err)
	}
	if n := cues(); n != 1 {
		t.Errorf("a statement that ended 2 jobs sent %d notifications, want 1", n)
	}
	events(t, st, 1)
}

func sortedEvents(e []eventRow, less func(a, b eventRow) bool) []eventRow {
	out := append([]eventRow(nil), e...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if less(out[j], out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestWebhookScopes: another user's endpoint is not found by any
// operation; an operator reaches it; the per-user limit holds.
func TestWebhookScopes(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	e := newWebhook(t, st, "alice")
	bob := store.OwnedBy("bob")
	if _, err := st.GetWebhook(ctx, bob, e.ID); !errors.Is(err, store.ErrWebhookNotFound) {
		t.Errorf("get another's: %v", err)
	}
	u := "https://evil.example/"
	if _, err := st.UpdateWebhook(ctx, bob, e.ID, store.WebhookUpdate{URL: &u}); !errors.Is(err, store.ErrWebhookNotFound) {
		t.Errorf("update another's: %v", err)
	}
	if err := st.DeleteWebhook(ctx, bob, e.ID); !errors.Is(err, store.ErrWebhookNotFound) {
		t.Errorf("delete another's: %v", err)
	}
	if _, err := st.QueueTestDelivery(ctx, bob, e.ID); !errors.Is(err, store.ErrWebhookNotFound) {
		t.Errorf("test another's: %v", err)
	}
	if _, err := st.ListDeliveries(ctx, bob, e.ID, 10, nil); !errors.Is(err, store.ErrWebhookNotFound) {
		t.Errorf("deliveries of another's: %v", err)
	}
	if _, err := st.GetWebhook(ctx, store.Operator("ops"), e.ID); err != nil {
		t.Errorf("operator get: %v", err)
	}
	for range store.MaxWebhooksPerUser - 1 {
		newWebhook(t, st, "alice")
	}
	if _, err := st.CreateWebhook(ctx, store.NewWebhook{UserID: "alice", URL: "https://x.example/", EventTypes: []string{store.EventJobFailed}, Secret: []byte{0}}); !errors.Is(err, store.ErrWebhookLimit) {
		t.Errorf("create past the limit: %v", err)
	}
}

// TestClaimAndRecordDeliveries: a claim counts the attempt and takes at
// most perEndpoint of one endpoint; a failure schedules a retry; 410
// disables the endpoint and fails its other pending events; a success
// resets the run of failures.
func TestClaimAndRecordDeliveries(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	a, b := newWebhook(t, st, "alice"), newWebhook(t, st, "bob")
	for range 3 {
		if _, err := st.QueueTestDelivery(ctx, store.OwnedBy("alice"), a.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.DB().Exec(`INSERT INTO webhook_deliveries (endpoint_id, event_type, job_id) VALUES ($1, 'job.failed', gen_random_uuid()), ($1, 'job.failed', gen_random_uuid())`, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.QueueTestDelivery(ctx, store.OwnedBy("bob"), b.ID); err != nil {
		t.Fatal(err)
	}
	got, err := st.ClaimDeliveries(ctx, 10, 2, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	per := map[uuid.UUID]int{}
	for _, d := range got {
		per[d.EndpointID]++
		if d.Attempts != 1 {
			t.Errorf("attempts %d, want 1", d.Attempts)
		}
	}
	if per[a.ID] != 2 || per[b.ID] != 1 {
		t.Fatalf("claimed per endpoint %v, want 2 of alice's and 1 of bob's", per)
	}
	if again, err := st.ClaimDeliveries(ctx, 10, 2, []uuid.UUID{a.ID}, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("claim with alice's busy: %d, %v", len(again), err)
	}
	policy := store.DisablePolicy{MinFailures: 100, After: time.Hour}
	for _, d := range got {
		r := store.AttemptResult{ID: d.ID, At: time.Now(), StatusCode: 500, Latency: time.Millisecond, Retry: time.Hour}
		if d.EndpointID == b.ID {
			r = store.AttemptResult{ID: d.ID, At: time.Now(), Delivered: true, StatusCode: 204}
		}
		if disabled, err := st.RecordAttempt(ctx, r, policy); err != nil || disabled {
			t.Fatalf("record: %v, %v", disabled, err)
		}
	}
	ea, _ := st.GetWebhook(ctx, store.Operator("ops"), a.ID)
	if ea.ConsecutiveFailures != 2 || ea.LastFailureAt == nil || !ea.Enabled {
		t.Fatalf("alice's endpoint after two failures: %+v", ea)
	}
	next, err := st.ClaimDeliveries(ctx, 10, 5, nil, time.Minute)
	if err != nil || len(next) != 3 {
		t.Fatalf("claim the rest: %d, %v", len(next), err)
	}
	disabled, err := st.RecordAttempt(ctx, store.AttemptResult{ID: next[0].ID, At: time.Now(), StatusCode: 410, Gone: true, Retry: time.Hour}, policy)
	if err != nil || !disabled {
		t.Fatalf("410: disabled %v, %v", disabled, err)
	}
	ea, _ = st.GetWebhook(ctx, store.Operator("ops"), a.ID)
	if ea.Enabled || ea.DisabledReason == nil || *ea.DisabledReason != "Disabled: the endpoint answered 410 Gone" {
		t.Fatalf("after 410: %+v", ea)
	}
	var pendingJobEvents int
	if err := st.DB().Get(&pendingJobEvents, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'PENDING' AND event_type <> 'webhook.test'`, a.ID); err != nil || pendingJobEvents != 0 {
		t.Fatalf("pending job events of a disabled endpoint: %d, %v", pendingJobEvents, err)
	}
	tr := true
	ea, err = st.UpdateWebhook(ctx, store.OwnedBy("alice"), a.ID, store.WebhookUpdate{Enabled: &tr})
	if err != nil || !ea.Enabled || ea.DisabledReason != nil || ea.ConsecutiveFailures != 0 {
		t.Fatalf("re-enabled: %+v, %v", ea, err)
	}
}

// TestFailingEndpointIsDisabled: past the policy's run of failures, the
// endpoint is disabled with a reason its owner reads.
func TestFailingEndpointIsDisabled(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	a := newWebhook(t, st, "alice")
	policy := store.DisablePolicy{MinFailures: 3, After: 0}
	var disabled bool
	for i := range 3 {
		d, err := st.QueueTestDelivery(ctx, store.OwnedBy("alice"), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ClaimDeliveries(ctx, 1, 1, nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		disabled, err = st.RecordAttempt(ctx, store.AttemptResult{ID: d.ID, At: time.Now(), Error: "connection refused", Retry: time.Hour}, policy)
		if err != nil {
			t.Fatal(err)
		}
		if disabled != (i == 2) {
			t.Fatalf("attempt %d: disabled %v", i+1, disabled)
		}
	}
	ea, _ := st.GetWebhook(ctx, store.OwnedBy("alice"), a.ID)
	if ea.Enabled || ea.DisabledReason == nil {
		t.Fatalf("after 3 failures: %+v", ea)
	}
	t.Logf("reason: %s", *ea.DisabledReason)
}

// TestEndpointCreatedAfterJobEndedGetsNothing: an outbox row is expanded
// when claimed, but only for the endpoints that existed when its jobs
// ended: one created in between gets none of their events, and gets the
// events of the jobs that end after it.
func TestEndpointCreatedAfterJobEndedGetsNothing(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	before := newWebhook(t, st, "alice")
	end := func() uuid.UUID { return completeOne(t, st).ID }
	early := end()
	after := newWebhook(t, st, "alice")
	late := end()
	want := []eventRow{
		{before.ID, store.EventJobCompleted, early},
		{before.ID, store.EventJobCompleted, late},
		{after.ID, store.EventJobCompleted, late},
	}
	got := events(t, st, 2)
	less := func(a, b eventRow) bool {
		if a.Job != b.Job {
			return a.Job == early
		}
		return a.Endpoint == before.ID
	}
	if diff := cmp.Diff(sortedEvents(want, less), sortedEvents(got, less)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// TestRecordOutbox: an outbox row's events are recorded at once: a
// success DELIVERED with its attempt, a failure PENDING for the retry path
// (which claims it when due), an event not attempted PENDING and due now;
// the row is deleted; recording again (a second sender of the same row)
// adds nothing, to the deliveries or to the endpoints' health; an endpoint
// deleted meanwhile gets no row.
func TestRecordOutbox(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	a, b, gone := newWebhook(t, st, "alice"), newWebhook(t, st, "alice"), newWebhook(t, st, "alice")
	var jobs []uuid.UUID
	for range 2 {
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j.ID)
	}
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 2, Lease: time.Minute})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	outs := make([]store.Outcome, len(claimed))
	for i, c := range claimed {
		outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeFailed, Error: "boom"}
	}
	if _, err := st.Finish(ctx, outs); err != nil {
		t.Fatal(err)
	}
	batches, err := st.ClaimOutbox(ctx, 10, time.Minute)
	if err != nil || len(batches) != 1 || len(batches[0].Events) != 6 {
		t.Fatalf("claim outbox: %+v, %v", batches, err)
	}
	if again, err := st.ClaimOutbox(ctx, 10, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("a claimed row claimed again: %d, %v", len(again), err)
	}
	if err := st.DeleteWebhook(ctx, store.OwnedBy("alice"), gone.ID); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var recs []store.EventRecord
	for i := range batches[0].Events {
		ev := &batches[0].Events[i]
		r := store.EventRecord{Event: ev, Attempted: true, Result: store.AttemptResult{At: now, Delivered: true, StatusCode: 204, Latency: 3 * time.Millisecond}}
		switch {
		case ev.EndpointID == b.ID && ev.Job.ID == jobs[0]:
			r.Result = store.AttemptResult{At: now, StatusCode: 500, Error: "HTTP 500", Latency: time.Millisecond, Retry: time.Millisecond}
		case ev.EndpointID == b.ID:
			r = store.EventRecord{Event: ev}
		}
		recs = append(recs, r)
	}
	policy := store.DisablePolicy{MinFailures: 100, After: time.Hour}
	for range 2 {
		if disabled, err := st.RecordOutbox(ctx, batches[0].ID, recs, policy); err != nil || len(disabled) != 0 {
			t.Fatalf("record: %v, %v", disabled, err)
		}
	}
	var rows []struct {
		Endpoint uuid.UUID  `db:"endpoint_id"`
		Status   string     `db:"status"`
		Attempts int        `db:"attempts"`
		Code     *int       `db:"last_status_code"`
		Ended    *time.Time `db:"ended_at"`
	}
	if err := st.DB().Select(&rows, `SELECT endpoint_id, status, attempts, last_status_code, ended_at FROM webhook_deliveries ORDER BY status, attempts`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d deliveries, want 4 (2 events of each remaining endpoint): %+v", len(rows), rows)
	}
	for _, r := range rows {
		switch {
		case r.Endpoint == a.ID:
			if r.Status != store.DeliveryDelivered || r.Attempts != 1 || r.Code == nil || *r.Code != 204 || r.Ended == nil {
				t.Errorf("a success: %+v", r)
			}
		case r.Endpoint == b.ID:
			if r.Status != store.DeliveryPending || r.Ended != nil {
				t.Errorf("a failure or an event not attempted: %+v", r)
			}
		default:
			t.Errorf("a delivery of a deleted endpoint: %+v", r)
		}
	}
	var outbox int
	if err := st.DB().Get(&outbox, `SELECT count(*) FROM webhook_outbox`); err != nil || outbox != 0 {
		t.Fatalf("outbox rows left: %d, %v", outbox, err)
	}
	eb, _ := st.GetWebhook(ctx, store.OwnedBy("alice"), b.ID)
	ea, _ := st.GetWebhook(ctx, store.OwnedBy("alice"), a.ID)
	if eb.ConsecutiveFailures != 1 || ea.ConsecutiveFailures != 0 || ea.LastSuccessAt == nil {
		t.Errorf("health: b %d failures (want 1: the second record wrote nothing, so counts nothing), a %d, a's last success %v", eb.ConsecutiveFailures, ea.ConsecutiveFailures, ea.LastSuccessAt)
	}
	due, err := st.ClaimDeliveries(ctx, 10, 10, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) < 1 {
		t.Fatalf("the retry path claimed %d of b's events, want the one not attempted at least", len(due))
	}
}

// TestEventID: a job event's webhook-id is the same for the same endpoint,
// job, type and end, differs when any of them does, is a version 8 UUID of
// the RFC 9562 variant, and is ordered by the end, as the delivery rows'
// primary key is best written.
func TestEventID(t *testing.T) {
	ep, j := uuid.New(), uuid.New()
	end := time.Date(2026, 3, 4, 12, 0, 5, 123456000, time.UTC)
	id := store.EventID(ep, j, store.EventJobCompleted, end)
	if again := store.EventID(ep, j, store.EventJobCompleted, end); again != id {
		t.Errorf("not stable: %s then %s", id, again)
	}
	for name, other := range map[string]uuid.UUID{
		"endpoint": store.EventID(uuid.New(), j, store.EventJobCompleted, end),
		"job":      store.EventID(ep, uuid.New(), store.EventJobCompleted, end),
		"type":     store.EventID(ep, j, store.EventJobFailed, end),
		"end":      store.EventID(ep, j, store.EventJobCompleted, end.Add(time.Microsecond)),
	} {
		if other == id {
			t.Errorf("another %s, the same id %s", name, id)
		}
	}
	if id.Version() != 8 || id.Variant() != uuid.RFC4122 {
		t.Errorf("%s: version %d, variant %v", id, id.Version(), id.Variant())
	}
	later := store.EventID(ep, j, store.EventJobCompleted, end.Add(time.Millisecond))
	if later.String() <= id.String() {
		t.Errorf("a later end sorts first: %s <= %s", later, id)
	}
}

// TestConcurrentRecordsDoNotDeadlock: records of outbox rows that share
// endpoints, their attempts in different orders, all succeed when made at
// the same time (a deadlock or a lock error would roll one back, and its
// events be sent again). The endpoints are updated in the order of their
// ids; this test did not catch the order of first attempts used before,
// here, so it guards the concurrent record as a whole.
func TestConcurrentRecordsDoNotDeadlock(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	var eps []*store.WebhookEndpoint
	for i := range 10 {
		eps = append(eps, newWebhook(t, st, fmt.Sprintf("user-%d", i)))
	}
	const senders, rounds = 16, 5
	start := time.Now()
	for round := range rounds {
		errs := make(chan error, senders)
		ready := make(chan struct{})
		for s := range senders {
			go func() {
				var recs []store.EventRecord
				for i := range eps {
					ep := eps[(i*(s+round+1))%len(eps)] // another order for each sender
					ev := &store.OutboxEvent{ID: uuid.New(), EventType: store.EventJobCompleted, OccurredAt: start}
					ev.Job.ID, ev.EndpointID = uuid.New(), ep.ID
					recs = append(recs, store.EventRecord{Event: ev, Attempted: true,
						Result: store.AttemptResult{At: start.Add(time.Duration(i) * time.Millisecond), Delivered: true, StatusCode: 204}})
				}
				<-ready // all at once
				_, err := st.RecordOutbox(ctx, int64(s), recs, store.DisablePolicy{MinFailures: 10, After: time.Hour})
				errs <- err
			}()
		}
		close(ready)
		for range senders {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	var n int
	if err := st.DB().Get(&n, `SELECT count(*) FROM webhook_deliveries`); err != nil || n != rounds*senders*len(eps) {
		t.Errorf("%d deliveries recorded, want %d (%v)", n, rounds*senders*len(eps), err)
	}
}

// TestPruneDeliveries: deliveries that ended before the cutoff are
// deleted, found by their time-ordered ids (job events, EventID) or, for
// ids that do not say when (version 4: test events, job events written
// before the outbox), by their own index; those that ended after the
// cutoff, or have not ended, are kept, whatever their id says. Several
// rounds, as the delivery loop calls it, until one deletes fewer than the
// limit.
func TestPruneDeliveries(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	ep := newWebhook(t, st, "alice")
	now := time.Now().UTC().Truncate(time.Millisecond)
	cutoff := now.Add(-7 * 24 * time.Hour)
	eventID := func(jobEnded time.Time) uuid.UUID {
		return store.EventID(ep.ID, uuid.New(), store.EventJobCompleted, jobEnded)
	}
	type row struct {
		name  string
		id    uuid.UUID
		ended *time.Time // nil: PENDING
		kept  bool
	}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	rows := []row{
		{"job event ended 8 days ago", eventID(now.Add(-8 * 24 * time.Hour)), at(-8 * 24 * time.Hour), false},
		{"job event ended just before the cutoff", eventID(cutoff.Add(-2 * time.Second)), at(-7*24*time.Hour - time.Second), false},
		{"retried job event ended after the cutoff", eventID(now.Add(-9 * 24 * time.Hour)), at(-6 * 24 * time.Hour), true},
		{"job event still pending", eventID(now.Add(-10 * 24 * time.Hour)), nil, true},
		{"job event ended an hour ago", eventID(now.Add(-time.Hour)), at(-time.Hour), true},
		{"test event ended 8 days ago", uuid.New(), at(-8 * 24 * time.Hour), false},
		{"test event ended a day ago", uuid.New(), at(-24 * time.Hour), true},
		{"version 4 job event ended 8 days ago", uuid.New(), at(-8 * 24 * time.Hour), false},
	}
	// The version 4 ids above must include one that reads as a time after
	// the cutoff, which only the second index finds.
	rows = append(rows, row{"version 4 id reading as the far future", uuid.MustParse("ffffffff-ffff-4fff-bfff-ffffffffffff"), at(-8 * 24 * time.Hour), false})
	for i := range 25 { // more than a round's limit
		rows = append(rows, row{fmt.Sprintf("old job event %d", i), eventID(now.Add(-20*24*time.Hour + time.Duration(i)*time.Second)), at(-20 * 24 * time.Hour), false})
	}
	for _, r := range rows {
		jobID := any(uuid.New())
		if strings.HasPrefix(r.name, "test event") {
			jobID = nil
		}
		status := store.DeliveryDelivered
		if r.ended == nil {
			status = store.DeliveryPending
		}
		if _, err := st.DB().Exec(`INSERT INTO webhook_deliveries (id, endpoint_id, event_type, job_id, status, ended_at)
			VALUES ($1, $2, 'job.completed', $3, $4, $5)`, r.id, ep.ID, jobID, status, r.ended); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	var deleted int64
	for {
		n, err := st.PruneDeliveries(ctx, cutoff, 10)
		if err != nil {
			t.Fatal(err)
		}
		deleted += n
		if n < 10 {
			break
		}
	}
	var left []uuid.UUID
	if err := st.DB().Select(&left, `SELECT id FROM webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	remaining := map[uuid.UUID]bool{}
	for _, id := range left {
		remaining[id] = true
	}
	want := 0
	for _, r := range rows {
		if remaining[r.id] != r.kept {
			t.Errorf("%s: kept %v, want %v", r.name, remaining[r.id], r.kept)
		}
		if !r.kept {
			want++
		}
	}
	if deleted != int64(want) {
		t.Errorf("PruneDeliveries reported %d deleted, want %d", deleted, want)
	}
}

// TestRecordOutboxTwoSendersAtOnce: two senders of one outbox row (its
// claim ran out while the first still sent, so another claimed it) record
// it at the same moment. The second's insert, not seeing the first's
// uncommitted row, waits on it, meets a unique violation when it commits,
// and RecordOutbox records again ON CONFLICT DO NOTHING: no error, the
// event recorded once (the first sender's record kept), the row deleted.
func TestRecordOutboxTwoSendersAtOnce(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	ep := newWebhook(t, st, "alice")
	completeOne(t, st)
	first, err := st.ClaimOutbox(ctx, 10, time.Millisecond)
	if err != nil || len(first) != 1 || len(first[0].Events) != 1 {
		t.Fatalf("first claim: %+v, %v", first, err)
	}
	var second []store.OutboxBatch
	eventually.NoError(t, 10*time.Second, "the first claim runs out and another sender claims the row", func() error {
		var err error
		if second, err = st.ClaimOutbox(ctx, 10, time.Minute); err == nil && len(second) == 0 {
			err = errors.New("nothing claimed")
		}
		return err
	})
	ev := second[0].Events[0]
	if second[0].ID != first[0].ID || ev.ID != first[0].Events[0].ID || ev.EndpointID != ep.ID {
		t.Fatalf("the second claim has row %d event %s, want row %d event %s", second[0].ID, ev.ID, first[0].ID, first[0].Events[0].ID)
	}

	// The first sender's record, caught between its insert and its commit.
	tx, err := st.DB().Beginx()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO webhook_deliveries (id, endpoint_id, event_type, job_id, occurred_at, status, attempts, next_attempt_at, last_status_code, ended_at)
		VALUES ($1, $2, $3, $4, $5, 'DELIVERED', 1, NULL, 204, now())`, ev.ID, ev.EndpointID, ev.EventType, ev.Job.ID, ev.OccurredAt); err != nil {
		t.Fatal(err)
	}
	recorded := make(chan error, 1)
	go func() {
		rec := store.EventRecord{Event: &ev, Attempted: true, Result: store.AttemptResult{At: time.Now(), StatusCode: 500, Error: "HTTP 500", Retry: time.Minute}}
		_, err := st.RecordOutbox(context.WithoutCancel(ctx), second[0].ID, []store.EventRecord{rec}, store.DisablePolicy{MinFailures: 10, After: time.Hour})
		recorded <- err
	}()
	eventually.True(t, 10*time.Second, "the second record waits for the first's row", func() bool {
		var n int
		_ = st.DB().Get(&n, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO webhook_deliveries%'`)
		return n == 1
	})
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recorded:
		if err != nil {
			t.Fatalf("the second record: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second record did not end within 10 s of the first's commit")
	}
	var rows []struct {
		Status string `db:"status"`
		Code   int    `db:"last_status_code"`
	}
	if err := st.DB().Select(&rows, `SELECT status, last_status_code FROM webhook_deliveries WHERE endpoint_id = $1 AND job_id = $2 AND event_type = $3`,
		ev.EndpointID, ev.Job.ID, ev.EventType); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Status != store.DeliveryDelivered || rows[0].Code != 204 {
		t.Errorf("deliveries of the event: %+v, want the first sender's alone (DELIVERED, 204)", rows)
	}
	var outbox int
	if err := st.DB().Get(&outbox, `SELECT count(*) FROM webhook_outbox`); err != nil || outbox != 0 {
		t.Errorf("outbox rows left: %d, %v", outbox, err)
	}
}

// TestDeliveryBacklog: what waits to be sent is counted apart: due
// deliveries (a test event here) are events; the outbox holds ended jobs,
// every one once any endpoint exists, including those of users without an
// endpoint, which expand to no event.
func TestDeliveryBacklog(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	if b, err := st.DeliveryBacklog(ctx); err != nil || b != (store.DeliveryBacklog{}) {
		t.Fatalf("empty: %+v, %v", b, err)
	}
	e := newWebhook(t, st, "alice")
	for _, user := range []string{"alice", "alice", "carol", "carol", "carol"} {
		if _, _, err := st.Create(ctx, store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 5, Lease: time.Minute})
	if err != nil || len(claimed) != 5 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	outs := make([]store.Outcome, len(claimed))
	for i, c := range claimed {
		outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)}
	}
	if _, err := st.Finish(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if _, err := st.QueueTestDelivery(ctx, store.OwnedBy("alice"), e.ID); err != nil {
		t.Fatal(err)
	}
	b, err := st.DeliveryBacklog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Due != 1 || b.OutboxJobs != 5 || b.Oldest < 0 || b.Oldest > time.Minute {
		t.Errorf("backlog %+v, want 1 due delivery and 5 ended jobs in the outbox, waiting for less than a minute", b)
	}
}
