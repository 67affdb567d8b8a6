package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// pooledStore opens a store on a fresh database through PgBouncer in
// transaction mode, with Options.Pooler, and returns it with the
// database's direct URL.
func pooledStore(t *testing.T, opts store.Options) (*store.Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	opts.Pooler = true
	st, err := store.Open(t.Context(), pgtest.PgBouncer(t, url).URL(url), opts)
	if err != nil {
		t.Fatalf("open the store through pgbouncer: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st, url
}

// TestPoolerHotPaths runs the hot paths of the API and the worker through
// PgBouncer in transaction mode, concurrently, so that their statements
// interleave on fewer server connections than the pool has client ones:
// creates (with an idempotency key, replayed), polls alone and batched,
// lists, claims (fair, and capped, in a transaction under an advisory
// lock), heartbeats, outcomes, a rescue and cancels.
func TestPoolerHotPaths(t *testing.T) {
	st, _ := pooledStore(t, store.Options{MaxOpenConns: 12, ReadBatches: 4})
	ctx := t.Context()
	const users, perUser = 4, 6
	ids := make([][]uuid.UUID, users)
	parallel(t, users, func(u int) error {
		for i := range perUser {
			j, replayed, err := st.Create(ctx, store.NewJob{
				UserID: user(u), Type: job.TypeRiskAnalysis, Input: []byte(`{"text":"maize"}`),
				IdempotencyScope: "create", IdempotencyKey: fmt.Sprint("k", i), RequestHash: []byte{0, byte(i), 0xff},
			})
			if err != nil || replayed {
				return fmt.Errorf("create: replayed %v, %w", replayed, err)
			}
			again, replayed, err := st.Create(ctx, store.NewJob{
				UserID: user(u), Type: job.TypeRiskAnalysis, Input: []byte(`{"text":"maize"}`),
				IdempotencyScope: "create", IdempotencyKey: fmt.Sprint("k", i), RequestHash: []byte{0, byte(i), 0xff},
			})
			if err != nil || !replayed || again.ID != j.ID {
				return fmt.Errorf("replay of %v: %v, replayed %v, %w", j.ID, again, replayed, err)
			}
			ids[u] = append(ids[u], j.ID)
		}
		return nil
	})
	pollAll := func(want job.Status) {
		t.Helper()
		// Many polls at once: the read batcher sends both of its
		// statements (one id, and an array of them).
		parallel(t, users*perUser, func(n int) error {
			u, i := n/perUser, n%perUser
			for range 5 {
				j, err := st.Get(ctx, store.OwnedBy(user(u)), ids[u][i])
				if err != nil || j.ID != ids[u][i] || j.Status != want {
					return fmt.Errorf("poll %v: %+v, %w", ids[u][i], j, err)
				}
			}
			if _, err := st.Get(ctx, store.OwnedBy(user((u+1)%users)), ids[u][i]); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("another user's poll of %v: %w, want ErrNotFound", ids[u][i], err)
			}
			return nil
		})
	}
	pollAll(job.StatusPending)
	for u := range users {
		page, next, err := st.List(ctx, store.OwnedBy(user(u)), store.ListFilter{Limit: perUser - 1})
		if err != nil || len(page) != perUser-1 || next == nil {
			t.Fatalf("list of %s: %d jobs, next %v, %v", user(u), len(page), next, err)
		}
		rest, next, err := st.List(ctx, store.OwnedBy(user(u)), store.ListFilter{Limit: perUser, After: next})
		if err != nil || len(rest) != 1 || next != nil {
			t.Fatalf("second page of %s: %d jobs, next %v, %v", user(u), len(rest), next, err)
		}
	}

	// Claims from two workers at once, one of them capped.
	claims := make([][]store.Claimed, 2)
	parallel(t, 2, func(w int) error {
		r := store.ClaimRequest{Worker: fmt.Sprint("w", w), N: users * perUser / 2, Lease: time.Minute}
		if w == 1 {
			r.UserConcurrency = perUser
		}
		for len(claims[w]) < r.N {
			c, _, err := st.Claim(ctx, r)
			if err != nil {
				return fmt.Errorf("claim by w%d: %w", w, err)
			}
			claims[w] = append(claims[w], c...)
			r.N -= len(c)
		}
		return nil
	})
	pollAll(job.StatusProcessing)
	parallel(t, 2, func(w int) error {
		lost, err := st.Heartbeat(ctx, claims[w], nil, time.Minute)
		if err != nil || len(lost) != 0 {
			return fmt.Errorf("heartbeat of w%d: lost %v, %w", w, lost, err)
		}
		return nil
	})

	// w0 completes its jobs; w1 completes all but two, whose leases run
	// out (a rescue puts them back) and then are cancelled.
	result, _ := json.Marshal(map[string]string{"summary": `"quoted" \ and ✓`})
	parallel(t, 2, func(w int) error {
		held := claims[w]
		if w == 1 {
			held = held[:len(held)-2]
		}
		var out []store.Outcome
		for _, c := range held {
			out = append(out, store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: result})
		}
		done, err := st.Finish(ctx, out)
		if err != nil || len(done) != len(out) {
			return fmt.Errorf("finish by w%d: %d of %d written, %w", w, len(done), len(out), err)
		}
		return nil
	})
	leftover := claims[1][len(claims[1])-2:]
	if _, err := st.DB().ExecContext(ctx, `UPDATE job_leases SET expires_at = now() - interval '1 second' WHERE lease = $1`, leftover[0].Lease); err != nil {
		t.Fatal(err)
	}
	if retried, failed, err := st.Rescue(ctx, 0); err != nil || retried != 2 || failed != 0 {
		t.Fatalf("rescue: %d retried, %d failed, %v; want 2 retried", retried, failed, err)
	}
	for _, c := range leftover {
		j, res, err := st.Cancel(ctx, store.OwnedBy(c.UserID), c.ID)
		if err != nil || res != store.Cancelled || j.Status != job.StatusFailed {
			t.Fatalf("cancel %v: %+v, %v, %v", c.ID, j, res, err)
		}
	}
	completed := 0
	for u := range users {
		for _, id := range ids[u] {
			j, err := st.Get(ctx, store.OwnedBy(user(u)), id)
			if err != nil {
				t.Fatal(err)
			}
			if j.Status == job.StatusCompleted {
				completed++
				var got map[string]string
				if err := json.Unmarshal(j.Result, &got); err != nil || got["summary"] != `"quoted" \ and ✓` {
					t.Errorf("result of %v = %s (%v)", id, j.Result, err)
				}
			}
		}
	}
	if want := users*perUser - 2; completed != want {
		t.Errorf("%d jobs completed, want %d", completed, want)
	}
}

// TestPoolerNeedsTheOption is the control: the same PgBouncer breaks a
// store opened without Options.Pooler, whose prepared poll statements live
// on one server connection each. So the harness does pool in transaction
// mode, and Pooler is what makes the store work behind it.
func TestPoolerNeedsTheOption(t *testing.T) {
	url := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), pgtest.PgBouncer(t, url).URL(url), store.Options{MaxOpenConns: 12, ReadBatches: 12})
	if err != nil {
		t.Fatalf("open: %v", err) // preparing on one connection works
	}
	defer st.Close()
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeRiskAnalysis, Input: []byte(`{}`)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for range 50 {
				if _, err := st.Get(t.Context(), store.OwnedBy("alice"), j.ID); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failed == 0 {
		t.Fatal("600 concurrent polls through pgbouncer all worked with prepared statements: is it pooling in transaction mode?")
	}
	t.Logf("%d of 600 polls failed without Options.Pooler, as expected", failed)
}

func user(u int) string { return fmt.Sprint("user", u) }

// parallel runs f(0..n-1) at once and fails the test with their errors.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestPingAnswersInTime: a Ping returns when its context ends although the
// statement waits in PgBouncer's queue (its one server connection held by
// another client's transaction), where lib/pq's cancel request does not
// reach it; readiness checks depend on it. It answers again once the
// server connection is free.
func TestPingAnswersInTime(t *testing.T) {
	url := pgtest.NewDatabase(t)
	b := pgtest.PgBouncerWith(t, url, pgserver.PgBouncerOptions{PoolSize: 1})
	st, err := store.Open(t.Context(), b.URL(url), store.Options{Pooler: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := sql.Open("postgres", b.URL(url))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT 1`); err != nil { // now it holds the server connection
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err = st.Ping(ctx)
	if took := time.Since(begin); !errors.Is(err, store.ErrUnavailable) || took > 2*time.Second {
		t.Fatalf("Ping while the pooler has no server connection to give: %v after %v; want ErrUnavailable at its 300 ms", err, took)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, "Ping answers once the server connection is free", func() error { return st.Ping(t.Context()) })
}

// BenchmarkPoolerPolls measures status polls of one job from 16 goroutines
// three ways: direct with the prepared statements (JOBS_DB_POOLER=none),
// direct without them (what JOBS_DB_POOLER=transaction sends), and through
// PgBouncer in transaction mode (a pool of 4 server connections).
//
//	go test -run '^$' -bench BenchmarkPoolerPolls -benchtime 5s ./store/
func BenchmarkPoolerPolls(b *testing.B) {
	url := pgtest.NewDatabase(b)
	bouncer := pgtest.PgBouncer(b, url)
	for _, c := range []struct {
		name   string
		url    string
		pooler bool
	}{
		{"direct prepared", url, false},
		{"direct unprepared", url, true},
		{"through pgbouncer", bouncer.URL(url), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			st, err := store.Open(b.Context(), c.url, store.Options{Pooler: c.pooler})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			j, _, err := st.Create(b.Context(), store.NewJob{UserID: "alice", Type: job.TypeRiskAnalysis, Input: []byte(`{}`)})
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := st.Get(context.Background(), store.OwnedBy("alice"), j.ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "polls/s")
			b.ReportMetric(float64(st.Gets())/float64(b.N), "statements/poll")
		})
	}
}
