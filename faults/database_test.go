package faults

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// outageBound is the longest a request may take while the database is away:
// the store's 5 s statement timeout plus a generous margin. Reaching the
// client timeout (20 s) would be a hang.
const outageBound = 8 * time.Second

// TestDatabaseCut: the link to PostgreSQL is cut for 3 s (connections closed,
// new ones refused) under load. The API answers the documented 503 quickly,
// /readyz says 503 and then 200, API and workers recover by themselves, and
// every job ends exactly once.
func TestDatabaseCut(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	px := newProxy(t, hostPort(t, dbURL))
	iss := newIssuer(t)
	api := startServe(t, px.url(dbURL), iss)
	w1 := startWorker(t, px.url(dbURL))
	w2 := startWorker(t, px.url(dbURL))
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var rec, ready recorder
	var created ids
	load := runLoad(ctx, c, &rec, &created, 4, 4, 400)
	probe := probeReady(ctx, newClient("http://"+api.Addr, ""), &ready)

	eventually.True(t, 30*time.Second, "10 jobs created and /readyz 200", func() bool {
		return len(created.list()) >= 10 && slices.ContainsFunc(ready.all(), func(r result) bool { return r.status == http.StatusOK })
	})
	cutAt := time.Now()
	px.cut()
	// The outage must really last 3 s: the requests meeting it are what is checked.
	time.Sleep(3 * time.Second)
	restoreAt := time.Now()
	px.restore()
	recovered := waitRecovered(t, c, 15*time.Second)
	// /readyz 200 again (the listener reconnects within its 5 s backoff),
	// then 20 answers from it to show it stays so; if it never is, the
	// checks below say how.
	_ = eventually.Wait(20*time.Second, func() error {
		again := 0
		for _, r := range ready.all() {
			if r.start.After(restoreAt) && (again > 0 || r.status == http.StatusOK) {
				again++
			}
		}
		if again < 20 {
			return errors.New("not yet")
		}
		return nil
	})
	stop()
	load.Wait()
	probe.Wait()
	end := time.Now()

	all := rec.all()
	if n, first := problems(all); n > 0 {
		t.Errorf("%d bad responses under the database cut; first: %q", n, first)
	}
	during := window(all, cutAt, restoreAt, nil)
	st := summarize(during)
	t.Logf("before the cut: %v", summarize(window(all, cutAt.Add(-2*time.Second), cutAt, nil)))
	t.Logf("during the cut (3 s): %v", st)
	t.Logf("after restore: %v; API recovered %v after restore", summarize(window(all, restoreAt, end, nil)), recovered.Round(time.Millisecond))
	if st.byStatus[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no 503 while the database was cut: %v", st)
	}
	if st.max > outageBound {
		t.Errorf("slowest response during the cut took %v (bound %v)", st.max, outageBound)
	}
	rd := ready.all()
	rdDuring := summarize(window(rd, cutAt.Add(200*time.Millisecond), restoreAt, nil))
	// /readyz is 200 again once the database answers and the change
	// listener has reconnected (its retry backs off up to 5 s), which may be
	// a little after requests succeed again; from then on, only 200.
	readyAgain := end
	for _, r := range rd {
		if r.start.After(restoreAt) && r.status == http.StatusOK && r.start.Before(readyAgain) {
			readyAgain = r.start
		}
	}
	rdAfter := summarize(window(rd, readyAgain, end, nil))
	t.Logf("/readyz during: %v; ready again %v after restore, then: %v", rdDuring, readyAgain.Sub(restoreAt).Round(time.Millisecond), rdAfter)
	if rdDuring.byStatus[http.StatusServiceUnavailable] == 0 || rdDuring.byStatus[http.StatusOK] > 0 {
		t.Errorf("/readyz during the cut: %v, want only 503", rdDuring)
	}
	if readyAgain.Sub(restoreAt) > 10*time.Second {
		t.Errorf("/readyz not 200 again within 10 s of the restore (the listener retries at most every 5 s)")
	}
	if rdAfter.byStatus[http.StatusOK] == 0 || rdAfter.byStatus[http.StatusServiceUnavailable] > 0 {
		t.Errorf("/readyz once ready again: %v, want only 200", rdAfter)
	}

	waitAllTerminal(t, direct, 30*time.Second)
	rep := audit(t, direct, created.list())
	t.Logf("audit: %v", rep)
	t.Logf("api log: %d request failed (503s logged), listener lost %d / reconnected %d; workers: claim failed %d+%d, write outcome failed %d+%d, rescued %d+%d",
		api.count("request failed"), api.count("notification listener lost its connection"), api.count("notification listener reconnected"),
		w1.count("claim failed"), w2.count("claim failed"), w1.count("write outcome failed"), w2.count("write outcome failed"),
		w1.count("rescued jobs of lost workers"), w2.count("rescued jobs of lost workers"))
}

// TestTerminateBackends: every backend of the service is killed server-side
// (pg_terminate_backend) twice under load: same expectations as a cut.
func TestTerminateBackends(t *testing.T) {
	proctest.SkipShort(t, "fault")
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	iss := newIssuer(t)
	api := startServe(t, dbURL, iss)
	startWorker(t, dbURL)
	startWorker(t, dbURL)
	c := newClient("http://"+api.Addr, iss.token(keyA, "alice", true))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var rec recorder
	var created ids
	load := runLoad(ctx, c, &rec, &created, 4, 4, 400)
	eventually.True(t, 30*time.Second, "10 jobs created", func() bool { return len(created.list()) >= 10 })
	var killed []int
	var recovered time.Duration
	for range 2 {
		var n int
		if err := direct.Get(&n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
			t.Fatal(err)
		}
		killed = append(killed, n)
		recovered = waitRecovered(t, c, 15*time.Second)
		// The load goes on against the reconnected service before the next kill, and the end.
		recoveredAt := time.Now()
		eventually.True(t, 30*time.Second, "20 requests after the recovery answered", func() bool {
			return len(window(rec.all(), recoveredAt, time.Now().Add(time.Hour), nil)) >= 20
		})
	}
	stop()
	load.Wait()

	all := rec.all()
	if n, first := problems(all); n > 0 {
		t.Errorf("%d bad responses after pg_terminate_backend; first: %q", n, first)
	}
	st := summarize(all)
	t.Logf("terminated %v backends; all responses: %v; recovered in %v", killed, st, recovered.Round(time.Millisecond))
	if st.max > outageBound {
		t.Errorf("slowest response took %v (bound %v)", st.max, outageBound)
	}
	waitAllTerminal(t, direct, 30*time.Second)
	t.Logf("audit: %v", audit(t, direct, created.list()))
}
