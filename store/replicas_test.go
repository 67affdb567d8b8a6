package store_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestGetFreshFallbacks: against a standby that replays nothing new (an
// hour's apply delay) and a lag limit that keeps it in use, GetFresh reads
// the standby's copy unless the caller has seen a newer version, the job
// changed since the standby was fresh, or the standby has no such job; then,
// and when the standby is gone, it reads the primary's. A user's list reads
// the standby.
func TestGetFreshFallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	primary, dbURL, writer := startPrimary(t, ctx)
	create := func() *job.Job { return createJob(t, writer, store.NewJob{}) }
	old := create()
	standby, err := pgserver.StartStandby(ctx, primary, pgserver.StandbyOptions{ApplyDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Close() })
	// The store sees the standby caught up before the writes below, which
	// it never replays: fresh as of then, and in use for the hour allowed.
	st, err := store.Open(ctx, dbURL, store.Options{ReadURLs: []string{standby.DatabaseURL("replicas")}, MaxLag: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eventually.True(t, 10*time.Second, "the standby in use", func() bool {
		rs := st.Replicas()
		return len(rs) == 1 && rs[0].InUse && rs[0].Lag == 0
	})
	cancelled, _, err := writer.Cancel(ctx, store.OwnedBy("alice"), old.ID)
	if err != nil {
		t.Fatal(err)
	}
	fresh := create() // on the primary only
	alice := store.OwnedBy("alice")
	for _, tc := range []struct {
		name     string
		id       uuid.UUID
		fresh    store.Fresh
		version  int64
		fallback string // "": the standby answers
	}{
		{"nothing asked: the standby's copy", old.ID, store.Fresh{}, old.Version, ""},
		{"a newer version seen", old.ID, store.Fresh{Version: cancelled.Version}, cancelled.Version, store.FallbackOlder},
		{"changed since the standby was fresh", old.ID, store.Fresh{ChangedAt: time.Now()}, cancelled.Version, store.FallbackChanged},
		{"changed before", old.ID, store.Fresh{ChangedAt: time.Now().Add(-time.Hour)}, old.Version, ""},
		{"not on the standby", fresh.ID, store.Fresh{}, fresh.Version, store.FallbackNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gets, primaryGets, fallbacks := st.Replicas()[0].Gets, st.Gets(), st.ReplicaFallbacks()
			j, err := st.GetFresh(ctx, alice, tc.id, tc.fresh)
			if err != nil {
				t.Fatal(err)
			}
			if j.Version != tc.version {
				t.Errorf("version %d, want %d", j.Version, tc.version)
			}
			gotReplica, gotPrimary := st.Replicas()[0].Gets-gets, st.Gets()-primaryGets
			if tc.fallback == "" && (gotReplica != 1 || gotPrimary != 0) || tc.fallback != "" && gotPrimary != 1 {
				t.Errorf("reads: standby +%d, primary +%d", gotReplica, gotPrimary)
			}
			if tc.fallback != "" && st.ReplicaFallbacks()[tc.fallback] != fallbacks[tc.fallback]+1 {
				t.Errorf("fallbacks %v -> %v, want one more %s", fallbacks, st.ReplicaFallbacks(), tc.fallback)
			}
		})
	}
	jobs, _, err := st.List(ctx, alice, store.ListFilter{Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].ID != old.ID || st.Replicas()[0].Lists != 1 {
		t.Fatalf("list: %v, %d jobs (the standby has 1), standby pages %d", err, len(jobs), st.Replicas()[0].Lists)
	}

	// The standby goes away: the read that finds it gone (or finds it out of
	// use, when the monitor noticed first) is answered by the primary.
	before := st.ReplicaFallbacks()
	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	j, err := st.GetFresh(ctx, alice, old.ID, store.Fresh{})
	if err != nil || j.Version != cancelled.Version {
		t.Fatalf("with the standby gone: %v, %v", j, err)
	}
	after := st.ReplicaFallbacks()
	gone := after[store.FallbackError] + after[store.FallbackNoReplica] - before[store.FallbackError] - before[store.FallbackNoReplica]
	if rs := st.Replicas(); rs[0].InUse || rs[0].Up || gone != 1 {
		t.Fatalf("after the standby stopped: %+v, fallbacks %v -> %v", rs, before, after)
	}
	if jobs, _, err := st.List(ctx, alice, store.ListFilter{Limit: 10}); err != nil || len(jobs) != 2 {
		t.Fatalf("list with the standby gone: %d jobs, %v; want the primary's 2", len(jobs), err)
	}
}

// TestHangingReplicaHoldsAPollASecond: a standby whose answers stop coming
// (a proxy in front of it holds them, its connections open: a network that
// stopped passing packets) holds a status poll for the replica's read bound,
// 1 s, not for the statement timeout (10 s here): the read fails, the
// primary answers, and the next poll does not try the standby.
func TestHangingReplicaHoldsAPollASecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	primary, dbURL, writer := startPrimary(t, ctx)
	standby, err := pgserver.StartStandby(ctx, primary, pgserver.StandbyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Close() })
	px := newStallProxy(t, standby.DatabaseURL("replicas"))
	const statementTimeout = 10 * time.Second
	st, err := store.Open(ctx, dbURL, store.Options{ReadURLs: []string{px.url}, QueryTimeout: statementTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Cleanup(func() { px.stall(false) }) // before st.Close: it waits for the reads in flight
	j := createJob(t, writer, store.NewJob{})
	alice := store.OwnedBy("alice")
	if err := standby.WaitReplayed(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the standby in use", func() bool { return st.Replicas()[0].InUse })
	if got, err := st.GetFresh(ctx, alice, j.ID, store.Fresh{}); err != nil || got.ID != j.ID || st.Replicas()[0].Gets == 0 {
		t.Fatalf("a poll before the standby hangs: %v, %v, %d reads on the standby", got, err, st.Replicas()[0].Gets)
	}

	px.stall(true)
	failed := st.ReplicaFallbacks()[store.FallbackError]
	// A poll whose own deadline is shorter than the statement timeout gets
	// its answer: the standby's read ended at its bound, and the primary
	// answered.
	pollCtx, cancelPoll := context.WithTimeout(ctx, statementTimeout/3)
	defer cancelPoll()
	t0 := time.Now()
	got, err := st.GetFresh(pollCtx, alice, j.ID, store.Fresh{})
	t.Logf("a poll with the standby hanging took %v", time.Since(t0))
	if err != nil || got.ID != j.ID {
		t.Fatalf("a poll with the standby hanging, within %v: %v, %v (statement timeout %v)", statementTimeout/3, got, err, statementTimeout)
	}
	if st.ReplicaFallbacks()[store.FallbackError] != failed+1 {
		t.Fatalf("fallbacks %v: the poll did not try the standby, the test did not test", st.ReplicaFallbacks())
	}
	// The standby is out of use: the next poll does not try it.
	gets := st.Replicas()[0].Gets
	if _, err := st.GetFresh(ctx, alice, j.ID, store.Fresh{}); err != nil || st.Replicas()[0].Gets != gets || st.Replicas()[0].InUse {
		t.Errorf("the next poll: %v, standby reads %d -> %d, in use %v", err, gets, st.Replicas()[0].Gets, st.Replicas()[0].InUse)
	}
}

// startPrimary starts a PostgreSQL cluster of its own (a standby needs one)
// with a migrated database "replicas", and a store writing to it; it skips
// under -short and without the server binaries.
func startPrimary(t *testing.T, ctx context.Context) (*pgserver.Server, string, *store.Store) {
	t.Helper()
	if testing.Short() {
		t.Skip("read replicas: skipped under -short (two PostgreSQL clusters)")
	}
	if _, err := pgserver.FindBinaries(); err != nil {
		if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatalf("read replicas need the PostgreSQL server binaries: %v", err)
		}
		t.Skipf("read replicas need the PostgreSQL server binaries (Debian: apt-get install postgresql): %v", err)
	}
	primary, err := pgserver.StartBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Close() })
	dbURL, err := primary.CreateDatabase(ctx, "replicas", "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := store.MigrateUp(ctx, db); err != nil {
		t.Fatal(err)
	}
	writer, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close() })
	return primary, dbURL, writer
}
