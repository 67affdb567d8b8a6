package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// TestUserConcurrency: two workers with a per-user cap of 2 never run more
// than 2 of one user's jobs at once, counted both by the handlers and by
// the leases in the database, while another user's jobs run beside them;
// every job completes.
func TestUserConcurrency(t *testing.T) {
	const limit = 2
	var (
		mu      sync.Mutex
		running = map[string]int{}
		peak    = map[string]int{}
		leased  int // the most of alice's leases seen from inside a handler
	)
	var st *store.Store
	h := func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		mu.Lock()
		running[j.UserID]++
		peak[j.UserID] = max(peak[j.UserID], running[j.UserID])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[j.UserID]--
			mu.Unlock()
		}()
		if j.UserID == "alice" {
			var n int
			if err := st.DB().GetContext(ctx, &n, `SELECT count(*) FROM jobs WHERE user_id = 'alice' AND lease_owner IS NOT NULL`); err != nil {
				return nil, err
			}
			mu.Lock()
			leased = max(leased, n)
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		return json.RawMessage(`{"ok":true}`), nil
	}
	b := setup(t, h)
	st = b.st
	b.cfg.UserConcurrency = limit
	var ids []uuid.UUID
	for i := range 16 {
		user := "alice"
		if i%4 == 3 {
			user = "bob"
		}
		j, _, err := b.st.Create(t.Context(), store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	b.start(t)
	b.start(t)
	eventually.NoError(t, 30*time.Second, "every job completed", func() error {
		var left int
		if err := b.st.DB().Get(&left, `SELECT count(*) FROM jobs WHERE status <> 'COMPLETED'`); err != nil {
			t.Fatal(err)
		}
		if left > 0 {
			return fmt.Errorf("%d of %d jobs not completed", left, len(ids))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if peak["alice"] > limit || leased > limit {
		t.Errorf("alice ran %d jobs at once (%d leased), cap %d", peak["alice"], leased, limit)
	}
	if peak["alice"] == 0 || peak["bob"] == 0 {
		t.Errorf("peaks %v: a user's jobs never ran", peak)
	}
	t.Logf("peak running per user: %v; alice's most leases seen: %d", peak, leased)
}

// TestNewUserBehindInterleavedBacklogs: while two users' interleaved
// backlogs are served, by window claims (the next jobs in queue order, no
// walk over users) as much as the free slots allow, a third user's job
// created behind them is reached long before the backlogs end: by a full
// claim, which the worker makes at least every second, and whenever fewer
// slots are free than users are waiting (TestWindowUsers has the rule).
func TestNewUserBehindInterleavedBacklogs(t *testing.T) {
	h := func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		return json.RawMessage(`{"ok":true}`), nil
	}
	b := setup(t, h)
	b.cfg.Concurrency = 10
	// 800 jobs of alice and carol in turn in the queue order (one
	// run_after, ids in turn): about 4 s at 10 × 50 ms.
	if _, err := b.st.DB().Exec(`INSERT INTO jobs (id, user_id, type, input)
		SELECT lpad(to_hex(g), 32, '0')::uuid, CASE WHEN g % 2 = 0 THEN 'alice' ELSE 'carol' END, 'AI_PREVIEW', '{"prompt":"x"}'
		FROM generate_series(1, 800) g`); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	completed := func() (n int) {
		if err := b.st.DB().Get(&n, `SELECT count(*) FROM jobs WHERE status = 'COMPLETED'`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually.True(t, 10*time.Second, "the backlogs are being served", func() bool { return completed() >= 40 })
	created, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "bob", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	bob := created.ID
	var left int
	eventually.True(t, 10*time.Second, "bob's job completed", func() bool {
		j, err := b.st.Get(t.Context(), store.OwnedBy("bob"), bob)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != job.StatusCompleted {
			return false
		}
		left = 801 - completed()
		return true
	})
	if left < 200 {
		t.Errorf("bob's job completed with only %d of the backlogs' 800 jobs left: it waited for them", left)
	}
}
