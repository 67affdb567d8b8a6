package store_test

import (
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// TestAPIProcessRegistry: each heartbeat returns the live API processes,
// itself included; a silent one stops counting after 30 s, one silent for a
// day is deleted, and an unregistered one is gone at once.
func TestAPIProcessRegistry(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	register := func(id string) int {
		t.Helper()
		n, err := st.RegisterAPIProcess(ctx, store.APIProcess{ID: id, Host: "box", PID: 42, StartedAt: start})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	exec := func(q string) {
		t.Helper()
		if _, err := st.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		do   func() int
		want int
	}{
		{"first process", func() int { return register("a") }, 1},
		{"its refresh", func() int { return register("a") }, 1},
		{"a second", func() int { return register("b") }, 2},
		{"the first sees it", func() int { return register("a") }, 2},
		{"b silent for 31 s", func() int {
			exec(`UPDATE api_processes SET last_seen_at = now() - interval '31 seconds' WHERE id = 'b'`)
			return register("a")
		}, 1},
		{"b back", func() int { return register("b") }, 2},
		{"b unregistered", func() int {
			if err := st.UnregisterAPIProcess(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			return register("a")
		}, 1},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: %d live, want %d", s.name, got, s.want)
		}
	}

	register("killed")
	exec(`UPDATE api_processes SET last_seen_at = now() - interval '25 hours' WHERE id = 'killed'`)
	register("a")
	var rows int
	if err := st.DB().Get(&rows, `SELECT count(*) FROM api_processes`); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("%d rows after a heartbeat, want 1 (the entry silent for a day is deleted)", rows)
	}
	got, err := st.APIProcesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "a" || !got[0].StartedAt.Equal(start) || got[0].LastSeenAt.IsZero() {
		t.Errorf("APIProcesses = %+v, want a alone", got)
	}
}
