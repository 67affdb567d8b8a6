package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// waiterSetup is a store with live API processes registered under ids.
func waiterSetup(t testing.TB, ids ...string) *store.Store {
	t.Helper()
	st, _ := pgtest.NewStore(t)
	for _, id := range ids {
		if _, err := st.RegisterProcess(t.Context(), apiProcess(id)); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// openWaiter opens a waiter and fails the test on an error.
func openWaiter(t testing.TB, st *store.Store, user, process string, capacity int) (int64, bool) {
	t.Helper()
	id, ok, err := st.OpenWaiter(t.Context(), user, process, capacity)
	if err != nil {
		t.Fatal(err)
	}
	return id, ok
}

// TestOpenWaiterCap: a user's waiters on all processes together are capped;
// another user has a cap of its own; a closed waiter frees its place.
func TestOpenWaiterCap(t *testing.T) {
	st := waiterSetup(t, "a", "b")
	var ids []int64
	for i, p := range []string{"a", "a", "a", "b"} {
		id, ok := openWaiter(t, st, "u", p, 4)
		if !ok {
			t.Fatalf("waiter %d on %s refused under the cap", i+1, p)
		}
		ids = append(ids, id)
	}
	for _, p := range []string{"a", "b"} {
		if _, ok := openWaiter(t, st, "u", p, 4); ok {
			t.Errorf("a fifth waiter on %s with cap 4 was opened", p)
		}
	}
	if _, ok := openWaiter(t, st, "other", "a", 4); !ok {
		t.Error("another user's first waiter refused")
	}
	if err := st.CloseWaiter(t.Context(), ids[3]); err != nil {
		t.Fatal(err)
	}
	if _, ok := openWaiter(t, st, "u", "a", 4); !ok {
		t.Error("refused after one of the four closed")
	}
	if err := st.CloseWaiter(t.Context(), ids[3]); err != nil {
		t.Errorf("closing twice: %v", err)
	}
	var rows int
	if err := st.DB().Get(&rows, `SELECT count(*) FROM waiters WHERE user_id = 'u'`); err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Errorf("%d rows for u, want 4: a refused open writes nothing", rows)
	}
}

// TestOpenWaiterConcurrent: opens that race for one user's last places never
// pass the cap together: of 20 at once with cap 5, exactly 5 succeed.
func TestOpenWaiterConcurrent(t *testing.T) {
	st := waiterSetup(t, "a", "b")
	for round := range 3 {
		user := fmt.Sprintf("u%d", round)
		var opened atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-start
				_, ok, err := st.OpenWaiter(context.Background(), user, []string{"a", "b"}[i%2], 5)
				if err != nil {
					t.Error(err)
				}
				if ok {
					opened.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := opened.Load(); n != 5 {
			t.Errorf("round %d: %d of 20 concurrent opens succeeded with cap 5, want 5", round, n)
		}
	}
}

// TestOpenWaiterDeadProcess: the waiters of a process that stopped
// heartbeating stop counting at once, and are deleted with its entry when
// it is forgotten; a clean stop deletes them too; a process without an
// entry cannot open waiters.
func TestOpenWaiterDeadProcess(t *testing.T) {
	st := waiterSetup(t, "a", "b")
	ctx := t.Context()
	exec := func(q string) {
		t.Helper()
		if _, err := st.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rows := func(process string) int {
		t.Helper()
		var n int
		if err := st.DB().Get(&n, `SELECT count(*) FROM waiters WHERE process_id = $1`, process); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 2 {
		openWaiter(t, st, "u", "b", 2)
	}
	if _, ok := openWaiter(t, st, "u", "a", 2); ok {
		t.Fatal("a third waiter opened with cap 2")
	}
	exec(`UPDATE processes SET last_seen_at = now() - interval '31 seconds' WHERE id = 'b'`)
	for i := range 2 {
		if _, ok := openWaiter(t, st, "u", "a", 2); !ok {
			t.Fatalf("waiter %d on a refused: b's waiters still count after b went silent", i+1)
		}
	}
	exec(`UPDATE processes SET last_seen_at = now() - interval '25 hours' WHERE id = 'b'`)
	if _, err := st.RegisterProcess(ctx, apiProcess("a")); err != nil {
		t.Fatal(err)
	}
	if n := rows("b"); n != 0 {
		t.Errorf("%d waiters of b left once b was forgotten, want 0", n)
	}
	if err := st.UnregisterProcess(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := rows("a"); n != 0 {
		t.Errorf("%d waiters of a left after a unregistered, want 0", n)
	}
	if id, _, err := st.OpenWaiter(ctx, "u", "never-registered", 2); err == nil || id == 0 {
		t.Errorf("a process without a registry entry: id %d, %v; want an error and the id to close", id, err)
	}
}

// BenchmarkWaiter measures opening and closing one waiter (two round trips),
// as the cap does per long poll that waits and per event stream:
// "advisory-lock" is OpenWaiter as built; "lock-row" serialises a user's
// opens on an upserted per-user row instead (created here only, to compare);
// "uncapped" inserts and deletes with no count and no lock, the floor.
func BenchmarkWaiter(b *testing.B) {
	st := waiterSetup(b, "a")
	ctx := context.Background()
	if _, err := st.DB().Exec(lockRowFunction); err != nil {
		b.Fatal(err)
	}
	for range 3 { // a few of the user's waiters open already, as in use
		if _, _, err := st.OpenWaiter(ctx, "u", "a", 1000); err != nil {
			b.Fatal(err)
		}
	}
	openClose := func(b *testing.B, open string) {
		for id := int64(1); b.Loop(); id++ {
			if _, err := st.DB().ExecContext(ctx, open, id, "u", "a", 1000, store.APIProcessSeenWithin.Seconds()); err != nil {
				b.Fatal(err)
			}
			if err := st.CloseWaiter(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("advisory-lock", func(b *testing.B) {
		for b.Loop() {
			id, ok, err := st.OpenWaiter(ctx, "u", "a", 1000)
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
			if err := st.CloseWaiter(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lock-row", func(b *testing.B) { openClose(b, `SELECT open_waiter_lock_row($1, $2, $3, $4, $5)`) })
	b.Run("uncapped", func(b *testing.B) {
		openClose(b, `INSERT INTO waiters (id, user_id, process_id) SELECT $1, $2, $3 WHERE $4::int > 0 AND $5::float8 > 0`)
	})
}

// lockRowFunction is the alternative BenchmarkWaiter compares: the same
// count and insert, serialised by a row lock on an upserted per-user row,
// which writes a row version (and WAL) on every open.
const lockRowFunction = `
CREATE TABLE waiter_locks (user_id text PRIMARY KEY);
CREATE FUNCTION open_waiter_lock_row(p_id bigint, p_user text, p_process text, p_cap integer, p_live_secs double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO waiter_locks VALUES (p_user) ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id;
    INSERT INTO waiters (id, user_id, process_id)
    SELECT p_id, p_user, p_process
    WHERE (SELECT count(*) FROM waiters w JOIN processes p ON p.id = w.process_id
           WHERE w.user_id = p_user
             AND p.last_seen_at >= now() - make_interval(secs => p_live_secs)) < p_cap;
    RETURN FOUND;
END;
$$;`
