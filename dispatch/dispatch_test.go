package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/dispatch"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/sqsfake"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/jobtype"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// bundle is what a test of the function needs: the store (with the
// outbox on, as the API has it), the fake queue and the handler.
type bundle struct {
	st    *store.Store
	queue *sqsfake.Queue
	h     *dispatch.Handler
}

// setup opens the store, starts the fake queue and makes the handler, its
// Config changed by each of opts.
func setup(t *testing.T, opts ...func(*dispatch.Config)) bundle {
	t.Helper()
	// Through PgBouncer with JOBS_TEST_POOLER=pgbouncer, as the Lambda
	// template runs behind RDS Proxy.
	st, _ := pgtest.NewStoreWith(t, store.Options{Outbox: true, MaxOpenConns: 2})
	q := sqsfake.New()
	q.MaxReceiveCount = 5 // above every job's attempts, as the template sets it
	t.Cleanup(q.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg := dispatch.Config{
		Worker: worker.Config{
			Store:    st,
			Handlers: jobtype.WorkerHandlers(st, model.NewLocal(), jobtype.ParseOptions{}),
			Classify: jobtype.Classify,
			Lease:    time.Second, Heartbeat: 200 * time.Millisecond,
			BackoffBase: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			JobTimeout: 20 * time.Second, Grace: 500 * time.Millisecond,
		},
		Queue: dispatch.NewQueue(q.Client(), q.URL),
		Log:   log,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := dispatch.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return bundle{st: st, queue: q, h: h}
}

func (b bundle) create(t *testing.T, prompt string) uuid.UUID {
	t.Helper()
	j, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: fmt.Appendf(nil, `{"prompt":%q}`, prompt)})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func (b bundle) sweep(t *testing.T) {
	t.Helper()
	if _, err := dispatch.Sweep(t.Context(), b.st, dispatch.NewQueue(b.queue.Client(), b.queue.URL)); err != nil {
		t.Fatal(err)
	}
}

func (b bundle) job(t *testing.T, id uuid.UUID) *job.Job {
	t.Helper()
	j, err := b.st.Get(context.Background(), store.OwnedBy("alice"), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// invoke calls the handler as lambda.Start would: through Invoke, with the
// event as JSON.
func (b bundle) invoke(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return events.SQSEventResponse{}, err
	}
	out, err := b.h.Invoke(ctx, payload)
	if err != nil {
		return events.SQSEventResponse{}, err
	}
	return out.(events.SQSEventResponse), nil
}

// drain plays the event source mapping until the job is finished.
func (b bundle) drain(t *testing.T, id uuid.UUID) *job.Job {
	t.Helper()
	client := b.queue.Client()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if j := b.job(t, id); j.Status.Terminal() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %v never finished: %+v", id, b.job(t, id))
		}
		if _, err := sqsfake.Poll(t.Context(), client, b.queue.URL, 10, 30, b.invoke); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompletes: a created job's outbox row is sent by the sweep, the
// function claims and completes it, and its message is deleted.
func TestCompletes(t *testing.T) {
	b := setup(t)
	id := b.create(t, "The harvest was late. Prices fell sharply in March.")
	b.sweep(t)
	if sent := b.queue.Sent(); len(sent) != 1 || sent[0].Body != id.String() || !sent[0].Batch || sent[0].DelaySeconds != 0 {
		t.Fatalf("sent %+v, want one batch message for %v", sent, id)
	}
	j := b.drain(t, id)
	if j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("job %s attempts %d error %v", j.Status, j.Attempts, j.Error)
	}
	if n := b.queue.Len(); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

// TestRetriesWithDelay: a job failing with a retryable error is sent again
// with its backoff as DelaySeconds after each attempt but the last; it
// ends FAILED after exactly max_attempts attempts, with nothing left in the
// queue and nothing in the dead-letter queue.
func TestRetriesWithDelay(t *testing.T) {
	b := setup(t)
	id := b.create(t, "[[simulate:throttle]] always throttled")
	b.sweep(t)
	j := b.drain(t, id)
	if j.Status != job.StatusFailed || j.Attempts != j.MaxAttempts || j.MaxAttempts != 3 {
		t.Fatalf("job %s attempts %d/%d error %v", j.Status, j.Attempts, j.MaxAttempts, j.Error)
	}
	sent := b.queue.Sent()
	if len(sent) != 3 {
		t.Fatalf("sent %+v, want the creation's message and two retries", sent)
	}
	for _, s := range sent[1:] {
		// The backoff is 100-200 ms, rounded up to a whole second.
		if s.Batch || s.DelaySeconds != 1 || s.Body != id.String() {
			t.Errorf("retry message %+v, want SendMessage with DelaySeconds 1", s)
		}
	}
	if n, dead := b.queue.Len(), b.queue.DeadLetters(); n != 0 || len(dead) != 0 {
		t.Errorf("queue holds %d, dead letters %v", n, dead)
	}
}

// TestBatchItemFailures: in one batch, a job whose retry message the
// queue refuses is reported in batchItemFailures (so SQS delivers it
// again), while a completed job, a duplicate, a finished job and a body
// that is not a job id are all acknowledged.
func TestBatchItemFailures(t *testing.T) {
	b := setup(t)
	failing := b.create(t, "[[simulate:throttle]] always throttled")
	ok := b.create(t, "Prices fell sharply in March.")
	b.queue.Refuse(failing.String(), true)
	rec := func(msgID string, body string) events.SQSMessage {
		return events.SQSMessage{MessageId: msgID, Body: body, EventSource: "aws:sqs"}
	}
	ev := events.SQSEvent{Records: []events.SQSMessage{
		rec("m-fail", failing.String()), rec("m-ok", ok.String()), rec("m-dup", ok.String()),
		rec("m-garbage", "not a job"), rec("m-gone", uuid.NewString()),
	}}
	resp, err := b.invoke(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m-fail" {
		t.Errorf("batchItemFailures = %+v, want only m-fail", resp.BatchItemFailures)
	}
	if j := b.job(t, ok); j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("ok job: %s attempts %d", j.Status, j.Attempts)
	}
	// The attempt counted and its retry is written; only the message failed.
	if j := b.job(t, failing); j.Status != job.StatusProcessing || j.Attempts != 1 {
		t.Errorf("failing job: %s attempts %d", j.Status, j.Attempts)
	}
}

// TestEarlyMessage: a message that arrives while its job waits for its
// backoff is sent again for the rest of the wait, not dropped and not run.
func TestEarlyMessage(t *testing.T) {
	b := setup(t)
	id := b.create(t, "Prices fell sharply in March.")
	if _, err := b.st.DB().Exec(`WITH q AS (UPDATE job_queue SET run_after = now() + interval '5 seconds' WHERE id = $1) UPDATE jobs SET run_after = now() + interval '5 seconds' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	resp, err := b.invoke(t.Context(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: id.String(), EventSource: "aws:sqs"}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("resp %+v, %v", resp, err)
	}
	sent := b.queue.Sent()
	if len(sent) != 1 || sent[0].Body != id.String() || sent[0].DelaySeconds < 4 || sent[0].DelaySeconds > 5 {
		t.Errorf("sent %+v, want one message with DelaySeconds 4-5", sent)
	}
	if j := b.job(t, id); j.Status != job.StatusPending || j.Attempts != 0 {
		t.Errorf("job %s attempts %d, want PENDING untouched", j.Status, j.Attempts)
	}
}

// TestCancelWithoutListen: a job cancelled while it runs is stopped
// through the heartbeat (its lease is gone), with no LISTEN connection;
// the invocation ends and the job stays FAILED "Cancelled by user".
func TestCancelWithoutListen(t *testing.T) {
	b := setup(t)
	id := b.create(t, "[[simulate:slow=30s]] long")
	done := make(chan events.SQSEventResponse, 1)
	go func() {
		resp, err := b.invoke(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: id.String(), EventSource: "aws:sqs"}}})
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	eventually.True(t, 10*time.Second, "the job started", func() bool { return b.job(t, id).Status == job.StatusProcessing })
	if _, _, err := b.st.Cancel(t.Context(), store.OwnedBy("alice"), id); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-done:
		if len(resp.BatchItemFailures) != 0 {
			t.Errorf("batchItemFailures %+v", resp.BatchItemFailures)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the invocation did not end after the cancellation")
	}
	if j := b.job(t, id); j.Status != job.StatusFailed || *j.Error != job.ErrTextCancelled {
		t.Errorf("job %s error %v", j.Status, j.Error)
	}
}

// TestScheduledRescue: the scheduled event rescues an attempt whose
// instance died (its lease expired) and sends the job's message, delayed
// by the backoff; the job then completes at attempt 2.
func TestScheduledRescue(t *testing.T) {
	b := setup(t)
	id := b.create(t, "Prices fell sharply in March.")
	if _, err := b.st.DB().Exec(`DELETE FROM outbox`); err != nil { // its message was delivered
		t.Fatal(err)
	}
	if got, err := b.st.ClaimIDs(t.Context(), "dead-instance", []uuid.UUID{id}, time.Minute); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	if _, err := b.st.DB().Exec(`UPDATE job_leases SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	out, err := b.h.Invoke(t.Context(), json.RawMessage(`{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := out.(dispatch.MaintainReport); r.Retried != 1 || r.Sent != 1 {
		t.Errorf("report %+v, want one retried and sent", r)
	}
	if sent := b.queue.Sent(); len(sent) != 1 || sent[0].Body != id.String() || sent[0].DelaySeconds != 1 {
		t.Errorf("sent %+v, want the rescued job with DelaySeconds 1", sent)
	}
	if j := b.drain(t, id); j.Status != job.StatusCompleted || j.Attempts != 2 {
		t.Errorf("job %s attempts %d", j.Status, j.Attempts)
	}
}

// TestInvocationDeadline: an attempt that the invocation's deadline would
// cut ends Reserve before it, as a timed-out attempt: counted, written as
// a retry and re-sent with its backoff, so the job neither hangs until its
// lease expires nor runs without end.
func TestInvocationDeadline(t *testing.T) {
	b := setup(t)
	id := b.create(t, "[[simulate:slow=30s]] longer than the invocation")
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Second) // Reserve is 5 s
	defer cancel()
	resp, err := b.invoke(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: id.String(), EventSource: "aws:sqs"}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("resp %+v, %v", resp, err)
	}
	if ctx.Err() != nil {
		t.Error("the invocation ran to its deadline; the attempt should have ended Reserve before it")
	}
	j := b.job(t, id)
	if j.Status != job.StatusProcessing || j.Attempts != 1 {
		t.Errorf("job %s attempts %d, want PROCESSING waiting for attempt 2", j.Status, j.Attempts)
	}
	if sent := b.queue.Sent(); len(sent) != 1 || sent[0].Body != id.String() || sent[0].DelaySeconds != 1 {
		t.Errorf("sent %+v, want the retry with DelaySeconds 1", sent)
	}
}

// TestSender: the API's sender sends a new job's message after Create
// without waiting for its sweep, sends rows another process left (it
// crashed between its insert and its send) at the next sweep, and leaves
// the outbox empty.
func TestSender(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		dispatch.RunSender(ctx, b.st, dispatch.NewQueue(b.queue.Client(), b.queue.URL), 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()

	waitSent := func(body string) {
		t.Helper()
		eventually.NoError(t, 10*time.Second, "a message for "+body, func() error {
			sent := b.queue.Sent()
			for _, s := range sent {
				if s.Body == body {
					return nil
				}
			}
			return fmt.Errorf("sent %+v", sent)
		})
	}
	created := b.create(t, "Prices fell sharply in March.")
	waitSent(created.String())
	orphan := uuid.New()
	if _, err := b.st.DB().Exec(`INSERT INTO outbox (job_id) VALUES ($1)`, orphan); err != nil {
		t.Fatal(err)
	}
	waitSent(orphan.String())
	cancel()
	<-done
	if n, err := b.st.OutboxLen(t.Context()); err != nil || n != 0 {
		t.Errorf("outbox holds %d rows (%v), want 0", n, err)
	}
	if got := len(b.queue.Sent()); got != 2 {
		t.Errorf("%d messages sent, want 2", got)
	}
}

// TestUserCap: with a cap of one job per user, a batch naming two of
// alice's jobs and one of bob's runs alice's older job and bob's; alice's
// other job is not claimed (no attempt) and its message is sent again with
// CapDelay as DelaySeconds, not reported in batchItemFailures, so that no
// message's receive count grows. It runs when the message comes back, after
// the first ended: each job completes at attempt 1, and alice's two never
// ran at once.
func TestUserCap(t *testing.T) {
	b := setup(t, func(c *dispatch.Config) {
		c.Worker.UserConcurrency = 1
		c.CapDelay = time.Second
	})
	first := b.create(t, "[[simulate:slow=300ms]] Prices fell sharply in March.")
	second := b.create(t, "[[simulate:slow=300ms]] The harvest was late.")
	other, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "bob", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"Rain in April."}`)})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(msgID string, id uuid.UUID) events.SQSMessage {
		return events.SQSMessage{MessageId: msgID, Body: id.String(), EventSource: "aws:sqs"}
	}
	resp, err := b.invoke(t.Context(), events.SQSEvent{Records: []events.SQSMessage{
		rec("m1", first), rec("m2", second), rec("m3", other.ID),
	}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("resp %+v, %v; want no batchItemFailures", resp, err)
	}
	if j := b.job(t, first); j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("alice's first job: %s attempts %d", j.Status, j.Attempts)
	}
	if j, err := b.st.Get(t.Context(), store.OwnedBy("bob"), other.ID); err != nil || j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("bob's job: %+v, %v; want COMPLETED at attempt 1 beside alice's", j, err)
	}
	if j := b.job(t, second); j.Status != job.StatusPending || j.Attempts != 0 {
		t.Errorf("alice's second job after the first batch: %s attempts %d, want PENDING untouched", j.Status, j.Attempts)
	}
	sent := b.queue.Sent()
	if len(sent) != 1 || sent[0].Body != second.String() || sent[0].Batch || sent[0].DelaySeconds != 1 {
		t.Fatalf("sent %+v, want alice's second job's message again with DelaySeconds 1", sent)
	}

	j2 := b.drain(t, second)
	j1 := b.job(t, first)
	if j2.Status != job.StatusCompleted || j2.Attempts != 1 {
		t.Errorf("alice's second job: %s attempts %d", j2.Status, j2.Attempts)
	}
	if j2.StartedAt == nil || j1.CompletedAt == nil || j2.StartedAt.Before(*j1.CompletedAt) {
		t.Errorf("alice's jobs overlapped: the second started at %v, the first completed at %v", j2.StartedAt, j1.CompletedAt)
	}
	if dead := b.queue.DeadLetters(); len(dead) != 0 {
		t.Errorf("dead letters: %v", dead)
	}
}

// TestRegistry: the instance registers as a worker process at its first
// invocation, under the id its claims record (the jobs' workerId), with
// the batch's jobs in flight while they run and none after.
func TestRegistry(t *testing.T) {
	b := setup(t, func(c *dispatch.Config) { c.Host = "jobs-fn 2026/12/02/[$LATEST]abc" })
	id := b.create(t, "[[simulate:slow=500ms]] Prices fell sharply in March.")
	done := make(chan error, 1)
	go func() {
		_, err := b.invoke(t.Context(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: id.String(), EventSource: "aws:sqs"}}})
		done <- err
	}()
	running := waitWorkers(t, b.st, func(ws []store.Process) bool { return len(ws) == 1 && ws[0].InFlight == 1 })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w := running[0]
	if w.ID != b.h.ID() || w.Host != "jobs-fn 2026/12/02/[$LATEST]abc" || w.Concurrency != 1 || w.PID != os.Getpid() {
		t.Errorf("registry entry %+v, want id %s, the host given, concurrency 1", w, b.h.ID())
	}
	aj, err := b.st.Get(t.Context(), store.Operator("test"), id)
	if err != nil {
		t.Fatal(err)
	}
	if aj.WorkerID == nil || *aj.WorkerID != b.h.ID() {
		t.Errorf("the job's workerId is %v, want the instance's %s", aj.WorkerID, b.h.ID())
	}
	ws, err := b.st.Processes(t.Context(), store.KindWorker)
	if err != nil || len(ws) != 1 || ws[0].InFlight != 0 {
		t.Errorf("after the invocation: %+v, %v; want the instance with nothing in flight", ws, err)
	}
	if err := b.h.Unregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ws, err := b.st.Processes(t.Context(), store.KindWorker); err != nil || len(ws) != 0 {
		t.Errorf("after Unregister: %+v, %v; want none", ws, err)
	}
}

// waitWorkers polls the registry until cond holds (10 s at most).
func waitWorkers(t *testing.T, st *store.Store, cond func([]store.Process) bool) []store.Process {
	t.Helper()
	var ws []store.Process
	eventually.NoError(t, 10*time.Second, "the registry as expected", func() error {
		var err error
		if ws, err = st.Processes(t.Context(), store.KindWorker); err != nil {
			t.Fatal(err)
		}
		if !cond(ws) {
			return fmt.Errorf("registry %+v", ws)
		}
		return nil
	})
	return ws
}
