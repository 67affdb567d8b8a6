package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// errRetryable and errPermanent are what test handlers fail with.
var (
	errRetryable = errors.New("Bedrock API error: ThrottlingException - Rate exceeded")
	errPermanent = errors.New("Invalid input: field \"prompt\" is empty")
)

func classify(err error) (bool, string) {
	switch {
	case errors.Is(err, errPermanent):
		return false, errPermanent.Error()
	case errors.Is(err, errRetryable):
		return true, errRetryable.Error()
	}
	return true, "Internal error while processing the job"
}

type bundle struct {
	st  *store.Store
	url string
	cfg worker.Config
}

// setup returns a fresh database and a worker config with second-scale
// durations, so fault tests finish quickly.
func setup(t *testing.T, h worker.Handler) *bundle {
	t.Helper()
	st, url := pgtest.NewStore(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return &bundle{st: st, url: url, cfg: worker.Config{
		Store:        st,
		Handlers:     map[job.Type]worker.Handler{job.TypeAIPreview: h, job.TypeRiskAnalysis: h},
		Classify:     classify,
		Log:          log,
		ListenURL:    url,
		Concurrency:  4,
		Lease:        time.Second,
		Heartbeat:    200 * time.Millisecond,
		RescueEvery:  200 * time.Millisecond,
		PollEvery:    500 * time.Millisecond,
		BackoffBase:  20 * time.Millisecond,
		BackoffMax:   100 * time.Millisecond,
		ShutdownWait: 200 * time.Millisecond,
	}}
}

// start runs a worker until the test ends (or stop is called), and returns
// once it is ready: its LISTEN is in place (pq's Listen returns after the
// server ran it), so a job created from then on is picked up without the
// fallback poll.
func (b *bundle) start(t *testing.T) (stop func()) {
	t.Helper()
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	eventually.True(t, 15*time.Second, "the worker is ready", func() bool {
		select {
		case <-done:
			t.Fatal("the worker stopped before it was ready")
		default:
		}
		return w.Ready()
	})
	return stop
}

func (b *bundle) create(t *testing.T, maxAttempts int) uuid.UUID {
	t.Helper()
	j, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`), MaxAttempts: maxAttempts})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// waitFor polls the job until cond holds (a functional bound, generous).
func (b *bundle) waitFor(t *testing.T, id uuid.UUID, what string, cond func(*job.Job) bool) *job.Job {
	t.Helper()
	var j *job.Job
	eventually.NoError(t, 15*time.Second, "job "+what, func() error {
		var err error
		if j, err = b.st.Get(context.Background(), store.OwnedBy("alice"), id); err != nil {
			t.Fatal(err)
		}
		if !cond(j) {
			return fmt.Errorf("job is %+v", j)
		}
		return nil
	})
	return j
}

func terminal(j *job.Job) bool { return j.Status.Terminal() }

// checkTimes: createdAt <= startedAt <= completedAt <= updatedAt, where set.
func checkTimes(t *testing.T, j *job.Job) {
	t.Helper()
	if j.StartedAt != nil && j.StartedAt.Before(j.CreatedAt) {
		t.Errorf("startedAt %v before createdAt %v", j.StartedAt, j.CreatedAt)
	}
	if j.CompletedAt != nil {
		if j.StartedAt != nil && j.CompletedAt.Before(*j.StartedAt) {
			t.Errorf("completedAt %v before startedAt %v", j.CompletedAt, j.StartedAt)
		}
		if j.UpdatedAt.Before(*j.CompletedAt) {
			t.Errorf("updatedAt %v before completedAt %v", j.UpdatedAt, j.CompletedAt)
		}
	}
}

func ok(context.Context, worker.Attempt) (json.RawMessage, error) {
	return json.RawMessage(`{"output":"done"}`), nil
}

func TestCompletes(t *testing.T) {
	b := setup(t, ok)
	b.start(t)
	id := b.create(t, 3)
	j := b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusCompleted || j.Attempts != 1 || string(j.Result) != `{"output": "done"}` || j.Error != nil {
		t.Errorf("job: %+v result %s", j, j.Result)
	}
	if j.StartedAt == nil || j.CompletedAt == nil {
		t.Errorf("startedAt %v completedAt %v", j.StartedAt, j.CompletedAt)
	}
	checkTimes(t, j)
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		failAttempts int   // attempts that fail before success
		failWith     error // nil: succeed
		wantStatus   job.Status
		wantAttempts int
		wantError    string
	}{
		{"retry twice then complete", 2, errRetryable, job.StatusCompleted, 3, ""},
		{"throttled every time", 99, errRetryable, job.StatusFailed, 3, "Bedrock API error: ThrottlingException - Rate exceeded"},
		{"permanent error", 99, errPermanent, job.StatusFailed, 1, `Invalid input: field "prompt" is empty`},
		{"unclassified error", 99, errors.New("dial tcp 10.0.0.1:443: connection refused"), job.StatusFailed, 3, "Internal error while processing the job"},
		{"panic", 99, errors.New("panic"), job.StatusFailed, 3, "Internal error while processing the job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
				if j.Attempt <= tt.failAttempts {
					if tt.failWith.Error() == "panic" {
						panic("boom")
					}
					return nil, tt.failWith
				}
				return ok(ctx, j)
			})
			b.start(t)
			id := b.create(t, 3)
			j := b.waitFor(t, id, "terminal", terminal)
			got := ""
			if j.Error != nil {
				got = *j.Error
			}
			if j.Status != tt.wantStatus || j.Attempts != tt.wantAttempts || got != tt.wantError {
				t.Errorf("status %s attempts %d error %q; want %s %d %q", j.Status, j.Attempts, got, tt.wantStatus, tt.wantAttempts, tt.wantError)
			}
			checkTimes(t, j)
		})
	}
}

// TestRetryStaysProcessing: between attempts the job is PROCESSING, with no
// error shown and no lease held.
func TestRetryStaysProcessing(t *testing.T) {
	release := make(chan struct{})
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if j.Attempt == 1 {
			return nil, errRetryable
		}
		select {
		case <-release:
			return ok(ctx, j)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b.cfg.BackoffBase, b.cfg.BackoffMax = 2*time.Second, 2*time.Second
	b.start(t)
	id := b.create(t, 3)
	// Retried: the first attempt is counted and the next one is not due yet.
	j := b.waitFor(t, id, "retried", func(j *job.Job) bool {
		var waiting bool
		if err := b.st.DB().Get(&waiting, `SELECT run_after > now() AND lease_owner IS NULL FROM jobs WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		return j.Attempts == 1 && waiting
	})
	if j.Status != job.StatusProcessing || j.Error != nil || j.CompletedAt != nil {
		t.Errorf("between attempts: %+v", j)
	}
	close(release)
	j = b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusCompleted || j.Attempts != 2 {
		t.Errorf("final: %s attempts %d", j.Status, j.Attempts)
	}
}

// TestRescue: a job claimed by a worker that died is returned to the queue
// when its lease expires, completes on a live worker with attempts 2, and
// the dead attempt can no longer write.
func TestRescue(t *testing.T) {
	b := setup(t, ok)
	id := b.create(t, 3)
	dead, _, err := b.st.Claim(t.Context(), store.ClaimRequest{Worker: "dead", N: 1, Lease: time.Second})
	if err != nil || len(dead) != 1 {
		t.Fatalf("claim: %v %v", dead, err)
	}
	b.start(t)
	j := b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusCompleted || j.Attempts != 2 {
		t.Errorf("after rescue: %s attempts %d", j.Status, j.Attempts)
	}
	for _, kind := range []store.OutcomeKind{store.OutcomeCompleted, store.OutcomeFailed, store.OutcomeRetry, store.OutcomeRelease} {
		o := store.Outcome{ID: id, Lease: dead[0].Lease, Kind: kind, Result: []byte(`{"output":"stale"}`), Error: "stale"}
		if done, err := b.st.Finish(t.Context(), []store.Outcome{o}); err != nil || done[id] {
			t.Errorf("the dead attempt wrote %s: %v %v", kind, done, err)
		}
	}
}

// TestRescueLastAttempt: a lost last attempt fails the job with the
// catalogue's "worker lost" text.
func TestRescueLastAttempt(t *testing.T) {
	b := setup(t, ok)
	id := b.create(t, 1)
	if _, _, err := b.st.Claim(t.Context(), store.ClaimRequest{Worker: "dead", N: 1, Lease: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	j := b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusFailed || j.Attempts != 1 || j.Error == nil || *j.Error != job.ErrTextWorkerLost {
		t.Errorf("job %+v", j)
	}
	checkTimes(t, j)
}

// TestCancel: a PENDING job is FAILED at once with startedAt null; a running
// handler sees its context cancelled and cannot overwrite the cancellation.
func TestCancel(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		b := setup(t, ok)
		id := b.create(t, 3)
		j, res, err := b.st.Cancel(t.Context(), store.OwnedBy("alice"), id)
		if err != nil || res != store.Cancelled {
			t.Fatal(res, err)
		}
		if j.Status != job.StatusFailed || *j.Error != job.ErrTextCancelled || j.StartedAt != nil || j.CompletedAt == nil {
			t.Errorf("job %+v", j)
		}
		if _, res, _ := b.st.Cancel(t.Context(), store.OwnedBy("alice"), id); res != store.AlreadyFinished {
			t.Errorf("second cancel: %v", res)
		}
		if _, _, err := b.st.Cancel(t.Context(), store.OwnedBy("mallory"), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("another user's cancel: %v", err)
		}
	})
	t.Run("running", func(t *testing.T) {
		started := make(chan struct{})
		sawCancel := make(chan struct{})
		b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			close(sawCancel)
			return json.RawMessage(`{"output":"too late"}`), nil
		})
		b.cfg.Heartbeat = time.Hour // the notification alone must stop the handler
		stop := b.start(t)
		id := b.create(t, 3)
		<-started
		if _, res, err := b.st.Cancel(t.Context(), store.OwnedBy("alice"), id); err != nil || res != store.Cancelled {
			t.Fatal(res, err)
		}
		select {
		case <-sawCancel:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler's context was not cancelled")
		}
		stop() // the handler's late result has been written, or refused, by now
		j, _ := b.st.Get(t.Context(), store.OwnedBy("alice"), id)
		if j.Status != job.StatusFailed || *j.Error != job.ErrTextCancelled || j.Result != nil {
			t.Errorf("cancellation overwritten: %+v", j)
		}
	})
}

// TestShutdownHandsBack: on shutdown a job still running after the grace
// period is handed back: on its first attempt that is PENDING again, with
// startedAt null and no lease, as if never taken; the next worker completes
// it with attempts 1.
func TestShutdownHandsBack(t *testing.T) {
	var calls atomic.Int32
	started := make(chan struct{}, 1)
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return ok(ctx, j)
	})
	stop := b.start(t)
	id := b.create(t, 3)
	<-started
	stop()
	j, _ := b.st.Get(t.Context(), store.OwnedBy("alice"), id)
	if j.Status != job.StatusPending || j.Attempts != 0 || j.StartedAt != nil {
		t.Fatalf("after shutdown: %+v", j)
	}
	var lease *uuid.UUID
	if err := b.st.DB().Get(&lease, `SELECT lease_owner FROM jobs WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if lease != nil {
		t.Errorf("lease still held: %v", lease)
	}
	var claims int
	if err := b.st.DB().Get(&claims, `SELECT count(*) FROM job_leases`); err != nil || claims != 0 {
		t.Errorf("%d claims' leases left after a clean shutdown (%v), want none", claims, err)
	}
	b.start(t)
	j = b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("after restart: %s attempts %d", j.Status, j.Attempts)
	}
}

// TestPickupByNotification: with a poll period of a minute, a new job is
// still picked up at once, by LISTEN/NOTIFY.
func TestPickupByNotification(t *testing.T) {
	b := setup(t, ok)
	b.cfg.PollEvery = time.Minute
	b.start(t) // returns once LISTEN is in place
	id := b.create(t, 3)
	j := b.waitFor(t, id, "terminal", terminal) // waitFor's bound is 15 s, far below a minute
	if j.Status != job.StatusCompleted {
		t.Errorf("job %+v", j)
	}
}

// TestExactlyOnce: three workers, each with its own connection pool as
// separate processes would have, on three thousand jobs. Every handler start
// is recorded when it starts, in its own transaction, so a duplicate run
// cannot hide, and a trigger records every transition to COMPLETED. The
// promise is at-least-once execution and exactly-once completion: every job
// is completed exactly once, and a job runs more than once only when a lease
// was lost (each run is an attempt), never twice within one attempt.
func TestExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 jobs through three workers: not under -short")
	}
	var b *bundle
	b = setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if _, err := b.st.DB().ExecContext(ctx, `INSERT INTO test_runs (job_id, attempt) VALUES ($1, $2)`, j.ID, j.Attempt); err != nil {
			return nil, err
		}
		return ok(ctx, j)
	})
	for _, ddl := range []string{
		`CREATE TABLE test_runs (job_id uuid, attempt int, at timestamptz DEFAULT clock_timestamp())`,
		`CREATE TABLE test_completions (job_id uuid)`,
		`CREATE FUNCTION record_completion() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN INSERT INTO test_completions VALUES (NEW.id); RETURN NULL; END $$`,
		`CREATE TRIGGER record_completion AFTER UPDATE ON jobs FOR EACH ROW
		 WHEN (NEW.status = 'COMPLETED' AND OLD.status IS DISTINCT FROM 'COMPLETED')
		 EXECUTE FUNCTION record_completion()`,
	} {
		if _, err := b.st.DB().Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
	const n = 3000
	if _, err := b.st.DB().Exec(`INSERT INTO jobs (id, user_id, type, input)
		SELECT gen_random_uuid(), 'alice', 'AI_PREVIEW', '{}' FROM generate_series(1, $1)`, n); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		own, err := store.Open(t.Context(), b.url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { own.Close() })
		w := *b
		w.cfg.Store = own
		w.cfg.Concurrency = 50
		w.start(t)
	}
	eventually.NoError(t, 90*time.Second, "every job finished", func() error {
		var left int
		if err := b.st.DB().Get(&left, `SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED')`); err != nil {
			t.Fatal(err)
		}
		if left > 0 {
			return fmt.Errorf("%d jobs unfinished", left)
		}
		return nil
	})
	var audit struct {
		Completed     int `db:"completed"`
		NotOnce       int `db:"not_once"`
		RunsNotTries  int `db:"runs_not_attempts"`
		TwiceInOneTry int `db:"twice_in_one_attempt"`
		Retried       int `db:"retried"`
	}
	err := b.st.DB().Get(&audit, `SELECT
		(SELECT count(*) FROM jobs WHERE status = 'COMPLETED') AS completed,
		(SELECT count(*) FROM jobs j WHERE (SELECT count(*) FROM test_completions c WHERE c.job_id = j.id) <> 1) AS not_once,
		(SELECT count(*) FROM jobs j WHERE (SELECT count(*) FROM test_runs r WHERE r.job_id = j.id) <> j.attempts) AS runs_not_attempts,
		(SELECT count(*) FROM (SELECT 1 FROM test_runs GROUP BY job_id, attempt HAVING count(*) > 1) d) AS twice_in_one_attempt,
		(SELECT count(*) FROM jobs WHERE attempts > 1) AS retried`)
	if err != nil {
		t.Fatal(err)
	}
	if audit.Completed != n || audit.NotOnce != 0 || audit.RunsNotTries != 0 || audit.TwiceInOneTry != 0 {
		t.Errorf("audit: %+v; want %d completed, each exactly once, one run per attempt", audit, n)
	}
	t.Logf("audit: %+v (retried: attempts whose lease was lost under load and rescued)", audit)
}

// TestRetryPickedUpWhenDue: a retry is claimed when its backoff ends, not
// at the next fallback poll (set here to a minute).
func TestRetryPickedUpWhenDue(t *testing.T) {
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if j.Attempt == 1 {
			return nil, errRetryable
		}
		return ok(ctx, j)
	})
	b.cfg.PollEvery = time.Minute
	b.cfg.BackoffBase, b.cfg.BackoffMax = 200*time.Millisecond, 200*time.Millisecond
	b.start(t) // returns once LISTEN is in place
	id := b.create(t, 3)
	j := b.waitFor(t, id, "terminal", terminal) // bounded by 15 s, far below the poll
	if j.Status != job.StatusCompleted || j.Attempts != 2 {
		t.Errorf("job %s attempts %d", j.Status, j.Attempts)
	}
}

// TestProcessingBeforeHandler: the claim is committed before the handler
// runs: inside the handler the row already reads PROCESSING with the attempt
// counted, startedAt set, a lease and this worker's id; even a fast job goes
// PENDING -> PROCESSING -> COMPLETED (version 3).
func TestProcessingBeforeHandler(t *testing.T) {
	type seen struct {
		status   job.Status
		attempts int
		started  bool
		leased   bool
		worker   string
	}
	saw := make(chan seen, 1)
	var b *bundle
	b = setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		var s struct {
			Status   job.Status `db:"status"`
			Attempts int        `db:"attempts"`
			Started  bool       `db:"started"`
			Leased   bool       `db:"leased"`
			Worker   string     `db:"worker_id"`
		}
		// Another connection: what every other client sees.
		err := b.st.DB().GetContext(ctx, &s, `SELECT status, attempts, started_at IS NOT NULL AS started,
			lease_owner IS NOT NULL AS leased, worker_id FROM jobs WHERE id = $1`, j.ID)
		if err != nil {
			return nil, err
		}
		saw <- seen{s.Status, s.Attempts, s.Started, s.Leased, s.Worker}
		return ok(ctx, j)
	})
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	id := b.create(t, 3)
	got := <-saw
	if want := (seen{job.StatusProcessing, 1, true, true, w.ID()}); got != want {
		t.Errorf("inside the handler the row read %+v, want %+v", got, want)
	}
	j := b.waitFor(t, id, "terminal", terminal)
	if j.Status != job.StatusCompleted || j.Attempts != 1 || j.Version != 3 {
		t.Errorf("job: %s attempts %d version %d; want COMPLETED, 1, 3 (created, claimed, completed)", j.Status, j.Attempts, j.Version)
	}
}

// stuckHandler ignores its context until release is closed, as a parser
// caught in a loop would; it reports each start on started.
func stuckHandler(started chan<- uuid.UUID, release <-chan struct{}) worker.Handler {
	return func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if string(j.Input) == `{"stuck": true}` {
			started <- j.ID
			<-release
			return json.RawMessage(`{"output":"too late"}`), nil
		}
		return ok(ctx, j)
	}
}

func (b *bundle) createInput(t *testing.T, input string, maxAttempts int) uuid.UUID {
	t.Helper()
	j, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(input), MaxAttempts: maxAttempts})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// TestWatchdog: a handler that ignores its deadline is abandoned: the
// attempt is written as timed out at the deadline (retried, then FAILED
// after the last attempt), its slot is replaced so other jobs keep
// completing, and when the stuck handler finally returns its result is
// dropped (the fence holds).
func TestWatchdog(t *testing.T) {
	started := make(chan uuid.UUID, 10)
	release := make(chan struct{})
	b := setup(t, stuckHandler(started, release))
	b.cfg.Concurrency = 2
	b.cfg.MaxStuck = 10
	b.cfg.JobTimeout = 300 * time.Millisecond
	b.cfg.Grace = 200 * time.Millisecond
	b.start(t)
	stuck := b.createInput(t, `{"stuck": true}`, 2)
	<-started
	// Both attempts of the stuck job run in turn; meanwhile every slot
	// still serves other jobs.
	var others []uuid.UUID
	for range 6 {
		others = append(others, b.create(t, 1))
	}
	for _, id := range others {
		if j := b.waitFor(t, id, "terminal", terminal); j.Status != job.StatusCompleted {
			t.Errorf("another job beside a stuck handler: %s", j.Status)
		}
	}
	j := b.waitFor(t, stuck, "terminal", terminal)
	if j.Status != job.StatusFailed || j.Attempts != 2 || j.Error == nil || *j.Error != "Internal error while processing the job" {
		t.Errorf("stuck job: %s attempts %d error %v; want FAILED after 2 attempts", j.Status, j.Attempts, j.Error)
	}
	close(release) // the stuck handlers return now; their results must be dropped
	j2 := b.waitFor(t, stuck, "unchanged", func(*job.Job) bool { return true })
	if j2.Version != j.Version || j2.Status != job.StatusFailed {
		t.Errorf("an abandoned handler wrote after its attempt ended: %+v", j2)
	}
}

// TestTooManyStuck: when more handlers are stuck than MaxStuck, Run returns
// ErrTooManyStuck (the process exits for its supervisor), and returns in
// bounded time although the handlers never return.
func TestTooManyStuck(t *testing.T) {
	started := make(chan uuid.UUID, 10)
	release := make(chan struct{})
	defer close(release)
	b := setup(t, stuckHandler(started, release))
	b.cfg.Concurrency = 2
	b.cfg.MaxStuck = 1
	b.cfg.JobTimeout = 200 * time.Millisecond
	b.cfg.Grace = 100 * time.Millisecond
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(t.Context()) }()
	for range 2 {
		b.createInput(t, `{"stuck": true}`, 3)
	}
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrTooManyStuck) {
			t.Errorf("Run returned %v, want ErrTooManyStuck", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not give up on its stuck handlers")
	}
}

// TestShutdownWithStuckHandler: SIGTERM ends Run within ShutdownWait plus
// Grace (plus margin) even when a handler ignores its context; the job is
// handed back, PENDING again.
func TestShutdownWithStuckHandler(t *testing.T) {
	started := make(chan uuid.UUID, 1)
	release := make(chan struct{})
	defer close(release)
	b := setup(t, stuckHandler(started, release))
	b.cfg.JobTimeout = time.Hour
	b.cfg.Grace = 200 * time.Millisecond
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	id := b.createInput(t, `{"stuck": true}`, 3)
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after shutdown with a stuck handler")
	}
	j := b.waitFor(t, id, "handed back", func(*job.Job) bool { return true })
	if j.Status != job.StatusPending || j.Attempts != 0 || j.StartedAt != nil {
		t.Errorf("after shutdown: %+v", j)
	}
}

// TestIdleWorkerWaits: a worker with nothing to do waits for notifications
// and its fallback poll; it does not pick again and again. Counted in
// transactions on its database (a spinning claim loop makes thousands a
// second; an idle worker a few: polls every 500 ms, rescues every 200 ms).
func TestIdleWorkerWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("a 4.5 s measurement of an idle worker: not under -short")
	}
	b := setup(t, ok)
	b.start(t)
	xacts := func() int64 {
		var n int64
		// pg_stat_database is updated when a backend reports, at most once a
		// second: sample after it has.
		if err := b.st.DB().Get(&n, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// pg_stat_database lags a backend by up to 1 s and shows no sign of catching up: let it count the start's transactions.
	time.Sleep(1500 * time.Millisecond)
	before := xacts()
	// The measurement is a rate: transactions in a 3 s window of idleness.
	time.Sleep(3 * time.Second)
	if n := xacts() - before; n > 300 {
		t.Errorf("an idle worker made %d transactions in about 3 s; want a few dozen", n)
	} else {
		t.Logf("idle worker: %d transactions in about 3 s", n)
	}
}

// TestMetrics: the worker records attempts, outcomes with their error
// class, pickup latency and rescues in its series.
func TestMetrics(t *testing.T) {
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		if j.Attempt == 1 && string(j.Input) == `{"flaky": true}` {
			return nil, errRetryable
		}
		return ok(ctx, j)
	})
	reg := prometheus.NewRegistry()
	b.cfg.Metrics = metrics.NewWorker(reg)
	b.start(t)
	done := b.create(t, 3)
	flaky := b.createInput(t, `{"flaky": true}`, 3)
	b.waitFor(t, done, "terminal", terminal)
	b.waitFor(t, flaky, "terminal", terminal)
	count := func(name string, labels map[string]string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metric:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metric
					}
				}
				switch {
				case m.Counter != nil:
					sum += m.Counter.GetValue()
				case m.Histogram != nil:
					sum += float64(m.Histogram.GetSampleCount())
				}
			}
		}
		return sum
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jobsd_attempts_started_total", nil, 3},
		{"jobsd_attempts_total", map[string]string{"outcome": "completed", "error_class": "none"}, 2},
		{"jobsd_attempts_total", map[string]string{"outcome": "retried", "error_class": "throttled"}, 1},
		{"jobsd_attempt_duration_seconds", nil, 3},
		{"jobsd_pickup_latency_seconds", nil, 2}, // first attempts only
	}
	for _, tc := range tests {
		// The last outcome is recorded just after its write commits.
		err := eventually.Wait(5*time.Second, func() error {
			if got := count(tc.name, tc.labels); got != tc.want {
				return fmt.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// TestRetention: the worker deletes finished jobs older than Retention and
// leaves the rest.
func TestRetention(t *testing.T) {
	b := setup(t, ok)
	b.cfg.Retention = 24 * time.Hour
	b.cfg.RetentionEvery = 50 * time.Millisecond
	old := time.Now().Add(-48 * time.Hour)
	var expired uuid.UUID
	if err := b.st.DB().Get(&expired, `INSERT INTO jobs (id, user_id, type, status, input, result, attempts, created_at, started_at, completed_at)
		VALUES ($1, 'alice', 'AI_PREVIEW', 'COMPLETED', '{}', '{}', 1, $2, $2, $2) RETURNING id`, store.FirstIDAt(old), old); err != nil {
		t.Fatal(err)
	}
	fresh := b.create(t, 3)
	b.start(t)
	b.waitFor(t, fresh, "terminal", terminal)
	eventually.NoError(t, 15*time.Second, "the expired job deleted", func() error {
		_, err := b.st.Get(t.Context(), store.OwnedBy("alice"), expired)
		switch {
		case err == nil:
			return errors.New("the job is still there")
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("Get: %w, want ErrNotFound", err)
		}
		return nil
	})
	if j, err := b.st.Get(t.Context(), store.OwnedBy("alice"), fresh); err != nil || j.Status != job.StatusCompleted {
		t.Errorf("a recent finished job: %+v, %v", j, err)
	}
}
