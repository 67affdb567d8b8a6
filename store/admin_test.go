package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// adminSetup is a store with helpers to create and drive jobs.
type adminSetup struct {
	t  *testing.T
	st *store.Store
}

func newAdminSetup(t *testing.T) adminSetup {
	st, _ := pgtest.NewStore(t)
	return adminSetup{t: t, st: st}
}

func (s adminSetup) create(user string, typ job.Type) uuid.UUID {
	s.t.Helper()
	j, _, err := s.st.Create(s.t.Context(), store.NewJob{UserID: user, Type: typ, Input: []byte(`{"prompt":"` + user + `"}`)})
	if err != nil {
		s.t.Fatal(err)
	}
	return j.ID
}

// claimOne claims the one runnable job (the caller made sure there is one).
func (s adminSetup) claimOne(worker string) store.Claimed {
	s.t.Helper()
	c, _, err := s.st.Claim(s.t.Context(), store.ClaimRequest{Worker: worker, N: 1, Lease: time.Minute})
	if err != nil || len(c) != 1 {
		s.t.Fatalf("claim: %v, %v", c, err)
	}
	return c[0]
}

func (s adminSetup) finish(o store.Outcome) {
	s.t.Helper()
	done, err := s.st.Finish(s.t.Context(), []store.Outcome{o})
	if err != nil || !done[o.ID] {
		s.t.Fatalf("finish %s: %v, %v", o.Kind, done, err)
	}
}

// fail runs the job's attempts until it is FAILED with msg.
func (s adminSetup) fail(id uuid.UUID, msg string) {
	s.t.Helper()
	c := s.claimOne("w1")
	if c.ID != id {
		s.t.Fatalf("claimed %v, want %v", c.ID, id)
	}
	s.finish(store.Outcome{ID: id, Lease: c.Lease, Kind: store.OutcomeFailed, Error: msg})
}

// TestAttemptLog: every way an attempt ends is in the job's attempt log,
// in order, with its worker and error; the attempt under way is last.
func TestAttemptLog(t *testing.T) {
	s := newAdminSetup(t)
	ctx := t.Context()
	id := s.create("alice", job.TypeAIPreview)

	c1 := s.claimOne("w1")
	s.finish(store.Outcome{ID: id, Lease: c1.Lease, Kind: store.OutcomeRetry, Error: "Bedrock API error: ThrottlingException - Rate exceeded"})
	if _, err := s.st.DB().Exec(`WITH q AS (UPDATE job_queue SET run_after = now() WHERE id = $1) UPDATE jobs SET run_after = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	c2 := s.claimOne("w2")
	// The worker vanished: its lease expires and the rescuer counts it lost.
	if _, err := s.st.DB().Exec(`UPDATE job_leases SET expires_at = now() - interval '1 second' WHERE $1 = ANY(ids)`, id); err != nil {
		t.Fatal(err)
	}
	if retried, failed, err := s.st.Rescue(ctx, 0); err != nil || retried != 1 || failed != 0 {
		t.Fatalf("rescue: %d retried, %d failed, %v", retried, failed, err)
	}
	c3 := s.claimOne("w3")

	got, err := s.st.Attempts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Attempt int
		Worker  string
		Outcome store.AttemptOutcome
		Error   string
		Ended   bool
	}
	flatten := func(as []store.Attempt) []entry {
		var out []entry
		for _, a := range as {
			e := entry{Attempt: a.Attempt, Outcome: a.Outcome, Ended: a.EndedAt != nil}
			if a.WorkerID != nil {
				e.Worker = *a.WorkerID
			}
			if a.Error != nil {
				e.Error = *a.Error
			}
			if a.StartedAt == nil && a.Attempt > 0 {
				t.Errorf("attempt %d has no start", a.Attempt)
			}
			out = append(out, e)
		}
		return out
	}
	want := []entry{
		{1, "w1", store.AttemptRetried, "Bedrock API error: ThrottlingException - Rate exceeded", true},
		{2, "w2", store.AttemptLost, job.ErrTextWorkerLost, true},
		{3, "w3", store.AttemptRunning, "", false},
	}
	if diff := cmp.Diff(want, flatten(got)); diff != "" {
		t.Fatalf("attempt log while running (-want +got):\n%s", diff)
	}
	_ = c2

	s.finish(store.Outcome{ID: id, Lease: c3.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"ok"}`)})
	got, err = s.st.Attempts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want[2] = entry{3, "w3", store.AttemptCompleted, "", true}
	if diff := cmp.Diff(want, flatten(got)); diff != "" {
		t.Errorf("attempt log when completed (-want +got):\n%s", diff)
	}

	// A cancellation: of a running attempt it is that attempt's end; of a
	// PENDING job, attempt 0.
	running := s.create("bob", job.TypeAIPreview)
	cr := s.claimOne("w4")
	if _, res, err := s.st.Cancel(ctx, store.Operator("root"), running); err != nil || res != store.Cancelled {
		t.Fatalf("cancel running: %v %v", res, err)
	}
	if done, err := s.st.Finish(ctx, []store.Outcome{{ID: running, Lease: cr.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)}}); err != nil || done[running] {
		t.Fatalf("the cancelled attempt wrote: %v %v", done, err)
	}
	pending := s.create("bob", job.TypeAIPreview)
	if _, res, err := s.st.Cancel(ctx, store.OwnedBy("bob"), pending); err != nil || res != store.Cancelled {
		t.Fatalf("cancel pending: %v %v", res, err)
	}
	for _, tc := range []struct {
		id   uuid.UUID
		want []entry
		by   string
	}{
		{running, []entry{{1, "w4", store.AttemptCancelled, job.ErrTextCancelledByAdmin, true}}, "root"},
		{pending, []entry{{0, "", store.AttemptCancelled, job.ErrTextCancelled, true}}, "bob"},
	} {
		got, err := s.st.Attempts(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, flatten(got)); diff != "" {
			t.Errorf("cancelled job's log (-want +got):\n%s", diff)
		}
		j, err := s.st.Get(ctx, store.Operator("test"), tc.id)
		if err != nil || j.CancelledBy == nil || *j.CancelledBy != tc.by {
			t.Errorf("cancelledBy = %v (%v), want %q", j.CancelledBy, err, tc.by)
		}
	}

	if _, err := s.st.Attempts(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("attempts of an unknown job: %v, want ErrNotFound", err)
	}
	// A job with no attempt yet has an empty log, not a 404.
	if got, err := s.st.Attempts(ctx, s.create("carol", job.TypeAIPreview)); err != nil || len(got) != 0 {
		t.Errorf("attempts of a new job: %v, %v", got, err)
	}
}

// TestRequeue: a FAILED job is run again as a new linked job, once; the
// original does not change; completed, running and cancelled jobs are
// refused with their reasons.
func TestRequeue(t *testing.T) {
	s := newAdminSetup(t)
	ctx := t.Context()
	failed := s.create("alice", job.TypeRiskAnalysis)
	s.fail(failed, "Bedrock API error: ThrottlingException - Rate exceeded")
	before, err := s.st.Get(ctx, store.Operator("test"), failed)
	if err != nil {
		t.Fatal(err)
	}

	again, err := s.st.Requeue(ctx, failed)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == failed || again.UserID != "alice" || again.Type != job.TypeRiskAnalysis || again.Status != job.StatusPending ||
		again.Attempts != 0 || again.RequeuedFrom == nil || *again.RequeuedFrom != failed {
		t.Errorf("requeued job = %+v", again)
	}
	var sameInput bool
	if err := s.st.DB().Get(&sameInput, `SELECT a.input = b.input FROM jobs a, jobs b WHERE a.id = $1 AND b.id = $2`, failed, again.ID); err != nil || !sameInput {
		t.Errorf("input not copied: %v %v", sameInput, err)
	}
	after, err := s.st.Get(ctx, store.Operator("test"), failed)
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version || after.Status != job.StatusFailed || after.RequeuedAs == nil || *after.RequeuedAs != again.ID {
		t.Errorf("original after requeue: version %d -> %d, status %s, requeuedAs %v", before.Version, after.Version, after.Status, after.RequeuedAs)
	}
	if _, err := s.st.Requeue(ctx, failed); !errors.Is(err, store.ErrAlreadyRequeued) {
		t.Errorf("second requeue: %v, want ErrAlreadyRequeued", err)
	}

	if _, err := s.st.Requeue(ctx, again.ID); !errors.Is(err, store.ErrNotFailed) {
		t.Errorf("requeue of a PENDING job: %v, want ErrNotFailed", err)
	}
	cancelled := s.create("alice", job.TypeRiskAnalysis)
	if _, _, err := s.st.Cancel(ctx, store.OwnedBy("alice"), cancelled); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.Requeue(ctx, cancelled); !errors.Is(err, store.ErrCancelledJob) {
		t.Errorf("requeue of a cancelled job: %v, want ErrCancelledJob", err)
	}
	if _, err := s.st.Requeue(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("requeue of an unknown job: %v, want ErrNotFound", err)
	}
}

// TestRequeueFailed: the filter's matches, the dry run's count, the limit,
// and that nothing is requeued twice.
func TestRequeueFailed(t *testing.T) {
	s := newAdminSetup(t)
	ctx := t.Context()
	since := time.Now().Add(-time.Minute)
	var throttled []uuid.UUID
	for range 3 {
		id := s.create("alice", job.TypeAIPreview)
		s.fail(id, "Bedrock API error: ThrottlingException - Rate exceeded")
		throttled = append(throttled, id)
	}
	other := s.create("bob", job.TypeAIPreview)
	s.fail(other, "Bedrock API error: ValidationException - bad prompt")
	cancelled := s.create("alice", job.TypeAIPreview)
	if _, _, err := s.st.Cancel(ctx, store.OwnedBy("alice"), cancelled); err != nil {
		t.Fatal(err)
	}

	f := store.RequeueFilter{FailedAfter: since, ErrorContains: "ThrottlingException", Limit: 2, DryRun: true}
	matched, made, err := s.st.RequeueFailed(ctx, f)
	if err != nil || matched != 3 || len(made) != 0 {
		t.Fatalf("dry run: matched %d, made %d, %v; want 3, 0", matched, len(made), err)
	}
	if n := countJobs(t, s.st); n != 5 {
		t.Fatalf("the dry run created jobs: %d", n)
	}
	f.DryRun = false
	matched, made, err = s.st.RequeueFailed(ctx, f)
	if err != nil || matched != 3 || len(made) != 2 {
		t.Fatalf("requeue: matched %d, made %d, %v; want 3, 2", matched, len(made), err)
	}
	for i, j := range made {
		if j.RequeuedFrom == nil || *j.RequeuedFrom != throttled[i] || j.Status != job.StatusPending {
			t.Errorf("new job %d = %+v, want requeued from %v (oldest first)", i, j, throttled[i])
		}
	}
	matched, made, err = s.st.RequeueFailed(ctx, f)
	if err != nil || matched != 1 || len(made) != 1 || *made[0].RequeuedFrom != throttled[2] {
		t.Fatalf("second round: matched %d, made %v, %v; want the third only", matched, made, err)
	}
	everything := store.RequeueFilter{FailedAfter: since, Limit: 100, DryRun: true}
	if matched, _, err = s.st.RequeueFailed(ctx, everything); err != nil || matched != 1 {
		t.Errorf("left to requeue: %d, %v; want 1 (bob's; never the cancelled one)", matched, err)
	}
	later := time.Now().Add(time.Minute)
	everything.FailedAfter = later
	if matched, _, err = s.st.RequeueFailed(ctx, everything); err != nil || matched != 0 {
		t.Errorf("failed after %v: %d, %v; want 0", later, matched, err)
	}
}

func countJobs(t *testing.T, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.DB().Get(&n, `SELECT count(*) FROM jobs`); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestListAny: every user's jobs newest first, the filters, and paging.
func TestListAny(t *testing.T) {
	s := newAdminSetup(t)
	ctx := t.Context()
	var all []uuid.UUID
	for i := range 5 {
		user := "alice"
		if i%2 == 1 {
			user = "bob"
		}
		all = append(all, s.create(user, job.TypeGapDetection))
		// Ids order by their creation millisecond: the next job must be created in a later one.
		time.Sleep(2 * time.Millisecond)
	}
	ids := func(js []job.Job) []uuid.UUID {
		var out []uuid.UUID
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	var got []uuid.UUID
	f := store.ListFilter{Limit: 2}
	for pages := 0; ; pages++ {
		page, next, err := s.st.List(ctx, store.Operator("test"), f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page)...)
		if next == nil {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		f.After = next
	}
	want := []uuid.UUID{all[4], all[3], all[2], all[1], all[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("every job, newest first (-want +got):\n%s", diff)
	}
	bob, _, err := s.st.List(ctx, store.Operator("test"), store.ListFilter{UserID: "bob", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uuid.UUID{all[3], all[1]}, ids(bob)); diff != "" {
		t.Errorf("bob's jobs (-want +got):\n%s", diff)
	}
	var created time.Time
	if err := s.st.DB().Get(&created, `SELECT created_at FROM jobs WHERE id = $1`, all[2]); err != nil {
		t.Fatal(err)
	}
	from, _, err := s.st.List(ctx, store.Operator("test"), store.ListFilter{CreatedAfter: &created, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uuid.UUID{all[4], all[3], all[2]}, ids(from)); diff != "" {
		t.Errorf("created at or after the third (-want +got):\n%s", diff)
	}
	before, _, err := s.st.List(ctx, store.Operator("test"), store.ListFilter{CreatedBefore: &created, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uuid.UUID{all[1], all[0]}, ids(before)); diff != "" {
		t.Errorf("created before the third (-want +got):\n%s", diff)
	}
	failed := job.StatusFailed
	if none, _, err := s.st.List(ctx, store.Operator("test"), store.ListFilter{Status: &failed, Limit: 10}); err != nil || len(none) != 0 {
		t.Errorf("FAILED jobs: %v, %v; want none", ids(none), err)
	}
}

// TestRecentActivity: jobs that ended in the last hour, by type and status
// and per minute; retries are not endings.
func TestRecentActivity(t *testing.T) {
	s := newAdminSetup(t)
	ctx := t.Context()
	done := s.create("alice", job.TypeParseDocument)
	c := s.claimOne("w1")
	s.finish(store.Outcome{ID: done, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)})
	s.fail(s.create("alice", job.TypeAIPreview), "boom")
	retried := s.create("alice", job.TypeAIPreview)
	c = s.claimOne("w1")
	s.finish(store.Outcome{ID: retried, Lease: c.Lease, Kind: store.OutcomeRetry, Backoff: time.Hour, Error: "later"})
	// Endings more than an hour ago count for neither: a completion logged
	// before migration 00014, and a count of completions since.
	if _, err := s.st.DB().Exec(`INSERT INTO job_attempts (job_id, attempt, type, outcome, final, ended_at)
		VALUES ($1, 1, 'AI_PREVIEW', 'completed', true, now() - interval '2 hours')`, uuid.New()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.DB().Exec(`INSERT INTO job_completions (minute, type, worker_id, n)
		VALUES (date_trunc('minute', now()) - interval '3 hours', 'AI_PREVIEW', 'w0', 5)`); err != nil {
		t.Fatal(err)
	}

	a, err := s.st.RecentActivity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.TypeStatusCount{
		{Type: job.TypeAIPreview, Status: job.StatusFailed, Count: 1},
		{Type: job.TypeParseDocument, Status: job.StatusCompleted, Count: 1},
	}
	if diff := cmp.Diff(want, a.FinishedLastHour); diff != "" {
		t.Errorf("finished in the last hour (-want +got):\n%s", diff)
	}
	if len(a.PerMinute) != 60 {
		t.Fatalf("%d minutes, want 60", len(a.PerMinute))
	}
	var completed, failed int64
	for i, m := range a.PerMinute {
		completed, failed = completed+m.Completed, failed+m.Failed
		if i > 0 && m.Minute.Sub(a.PerMinute[i-1].Minute) != time.Minute {
			t.Errorf("minute %d is %v after %v", i, m.Minute, a.PerMinute[i-1].Minute)
		}
	}
	if completed != 1 || failed != 1 {
		t.Errorf("per minute: %d completed, %d failed; want 1 and 1", completed, failed)
	}
	if last := a.PerMinute[59]; last.Completed+last.Failed == 0 && a.PerMinute[58].Completed+a.PerMinute[58].Failed == 0 {
		t.Errorf("the endings are not in the last minutes: %+v", a.PerMinute[58:])
	}

	// Pruning drops the old count and keeps this hour's.
	if err := s.st.PruneCompletions(ctx); err != nil {
		t.Fatal(err)
	}
	var counts []int64
	if err := s.st.DB().Select(&counts, `SELECT n FROM job_completions ORDER BY minute`); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(counts, []int64{1}) {
		t.Errorf("completion counts after pruning: %v, want this hour's one", counts)
	}
}
