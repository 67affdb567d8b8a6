package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// apiProcess is an API process's registry entry, started now.
func apiProcess(id string) store.Process {
	return store.Process{ID: id, Kind: store.KindAPI, Host: "box", PID: 1, Version: "v1", StartedAt: time.Now()}
}

// TestProcessRegistry, for each kind: each heartbeat returns the live
// processes of its kind, itself included, and never counts the other kind;
// a process silent for longer than its kind's window stops counting, one
// silent for a day is deleted by any heartbeat, and an unregistered one is
// gone at once.
func TestProcessRegistry(t *testing.T) {
	for _, tt := range []struct {
		kind, other store.ProcessKind
		silent      string // just past SeenWithin(kind)
	}{
		{kind: store.KindAPI, other: store.KindWorker, silent: "31 seconds"},
		{kind: store.KindWorker, other: store.KindAPI, silent: "61 seconds"},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			st, _ := pgtest.NewStore(t)
			ctx := t.Context()
			register := func(id string, kind store.ProcessKind) int {
				t.Helper()
				n, err := st.RegisterProcess(ctx, store.Process{ID: id, Kind: kind, Host: "box", PID: 42, Version: "v1", StartedAt: time.Now()})
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
				{"first process", func() int { return register("a", tt.kind) }, 1},
				{"its refresh", func() int { return register("a", tt.kind) }, 1},
				{"one of the other kind", func() int { return register("other", tt.other) }, 1},
				{"a second", func() int { return register("b", tt.kind) }, 2},
				{"the first sees it", func() int { return register("a", tt.kind) }, 2},
				{"b silent for " + tt.silent, func() int {
					exec(fmt.Sprintf(`UPDATE processes SET last_seen_at = now() - interval '%s' WHERE id = 'b'`, tt.silent))
					return register("a", tt.kind)
				}, 1},
				{"b back", func() int { return register("b", tt.kind) }, 2},
				{"b unregistered", func() int {
					if err := st.UnregisterProcess(ctx, "b"); err != nil {
						t.Fatal(err)
					}
					return register("a", tt.kind)
				}, 1},
			}
			for _, s := range steps {
				if got := s.do(); got != s.want {
					t.Fatalf("%s: %d live, want %d", s.name, got, s.want)
				}
			}

			register("killed", tt.other)
			exec(`UPDATE processes SET last_seen_at = now() - interval '25 hours' WHERE id = 'killed'`)
			register("a", tt.kind)
			var ids []string
			if err := st.DB().Select(&ids, `SELECT id FROM processes ORDER BY id`); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"a", "other"}, ids); diff != "" {
				t.Errorf("entries after a heartbeat (-want +got): the one silent for a day, of either kind, is deleted\n%s", diff)
			}
		})
	}
}

// TestProcesses: the listing holds the live processes of one kind, oldest
// start first, as registered, with their last refresh's load.
func TestProcesses(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	entries := []store.Process{
		{ID: "w2", Kind: store.KindWorker, Host: "box", PID: 43, Version: "v2", Concurrency: 4, InFlight: 1, StartedAt: start.Add(time.Minute)},
		{ID: "w1", Kind: store.KindWorker, Host: "box", PID: 42, Version: "v1", Concurrency: 8, InFlight: 3, StartedAt: start},
		{ID: "silent", Kind: store.KindWorker, Host: "box", PID: 7, Version: "v1", Concurrency: 1, StartedAt: start},
		{ID: "api1", Kind: store.KindAPI, Host: "web", PID: 9, Version: "v2", StartedAt: start},
	}
	for _, p := range entries {
		if _, err := st.RegisterProcess(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	refreshed := entries[1]
	refreshed.InFlight, refreshed.Concurrency = 5, 9
	if _, err := st.RegisterProcess(ctx, refreshed); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`UPDATE processes SET last_seen_at = now() - interval '2 minutes' WHERE id = 'silent'`); err != nil {
		t.Fatal(err)
	}

	ignoreSeen := cmpopts.IgnoreFields(store.Process{}, "LastSeenAt")
	for _, tt := range []struct {
		kind store.ProcessKind
		want []store.Process
	}{
		{kind: store.KindWorker, want: []store.Process{refreshed, entries[0]}},
		{kind: store.KindAPI, want: []store.Process{entries[3]}},
	} {
		got, err := st.Processes(ctx, tt.kind)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got, ignoreSeen); diff != "" {
			t.Errorf("Processes(%s) (-want +got):\n%s", tt.kind, diff)
		}
		for _, p := range got {
			if p.LastSeenAt.IsZero() || p.LastSeenAt.Location() != time.UTC {
				t.Errorf("%s: last seen %v, want a UTC time", p.ID, p.LastSeenAt)
			}
		}
	}

	if err := st.UnregisterProcess(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	got, err := st.Processes(ctx, store.KindWorker)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Process{entries[0]}, got, ignoreSeen); diff != "" {
		t.Errorf("after unregistering w1 (-want +got):\n%s", diff)
	}
	qs, err := st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if qs.LiveWorkers != 1 {
		t.Errorf("QueueStats.LiveWorkers = %d, want 1 (w2)", qs.LiveWorkers)
	}
}

// TestRegisterProcessRefusesUnknownKind: the table's check holds; the error
// says what was being done.
func TestRegisterProcessRefusesUnknownKind(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	_, err := st.RegisterProcess(t.Context(), store.Process{ID: "x", Kind: "cron", Host: "box", PID: 1, Version: "v1", StartedAt: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "register cron process") {
		t.Fatalf("registering a process of kind cron: %v; want an error saying so", err)
	}
}

func TestSeenWithin(t *testing.T) {
	if got := store.SeenWithin(store.KindAPI); got != 30*time.Second {
		t.Errorf("SeenWithin(api) = %v, want 30s", got)
	}
	if got := store.SeenWithin(store.KindWorker); got != time.Minute {
		t.Errorf("SeenWithin(worker) = %v, want 1m", got)
	}
}
