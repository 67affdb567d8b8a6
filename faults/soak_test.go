package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// soakPrompt is the soak's job mix.
func soakPrompt(i int) string {
	switch i % 8 {
	case 0:
		return fmt.Sprintf("[[simulate:throttle-once]] Soak %d. The harvest was late.", i)
	case 1, 5:
		return fmt.Sprintf("[[simulate:slow=%dms]] Soak %d. Maize prices fell in March.", 500+rand.IntN(1500), i)
	case 3:
		return fmt.Sprintf("[[simulate:permanent]] Soak %d.", i)
	default:
		return fmt.Sprintf("Soak %d. Rainfall was low and roads flooded in April.", i)
	}
}

type fault struct {
	kind       string
	start, end time.Time
}

// TestSoak: users create, poll (with ETags), long-poll and cancel jobs
// against one API and two workers, all through the database proxy, while a
// fault is injected at intervals, alternately a 2 s database cut and a
// worker SIGKILL (restarted at once). 20 s by default; JOBS_SOAK=5m for a
// long run (make soak). At the end: no job lost or finished twice, no 5xx
// but the documented 503 during a cut, and poll latencies around each fault.
func TestSoak(t *testing.T) {
	proctest.SkipShort(t, "soak")
	t.Parallel()
	dur, every := 20*time.Second, 5*time.Second
	if v := os.Getenv("JOBS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("JOBS_SOAK=%q is not a duration", v)
		}
		dur, every = d, 20*time.Second
	}
	dbURL := pgtest.NewDatabase(t)
	direct := openDirect(t, dbURL)
	installHistory(t, direct)
	px := newProxy(t, hostPort(t, dbURL))
	iss := newIssuer(t)
	// The per-user rate limits stay on, at their defaults: users act within them.
	api := startServe(t, px.url(dbURL), iss, "JOBS_RATE_READ=", "JOBS_RATE_CREATE=")
	workers := []*proc{startWorker(t, px.url(dbURL)), startWorker(t, px.url(dbURL))}
	base := "http://" + api.Addr

	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	var rec recorder
	var created ids
	var wg sync.WaitGroup
	const users = 8
	for u := range users {
		c := newClient(base, iss.token(keyA, fmt.Sprintf("soak-user-%d", u), true))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := u; ctx.Err() == nil; i += users {
				r := c.create(soakPrompt(i))
				rec.add(r)
				j, ok := r.job()
				if !ok || r.status != http.StatusAccepted {
					sleepCtx(ctx, 500*time.Millisecond)
					continue
				}
				created.add(j.ID)
				follow(c, &rec, j.ID.String(), i%3, 20*time.Second)
			}
		}()
	}

	var faults []fault
	start := time.Now()
	for k := 0; ; k++ {
		next := start.Add(time.Duration(k+1) * every)
		if next.Add(4 * time.Second).After(start.Add(dur)) {
			break
		}
		// The faults come on a schedule: one every `every` of the soak's duration.
		time.Sleep(time.Until(next))
		f := fault{start: time.Now()}
		if k%2 == 0 {
			f.kind = "database cut 2s"
			px.cut()
			// The cut must really last 2 s: the requests meeting it are what is measured.
			time.Sleep(2 * time.Second)
			px.restore()
			f.end = time.Now()
		} else {
			f.kind = "worker SIGKILL+restart"
			w := k / 2 % 2
			workers[w].Kill()
			workers[w] = startWorker(t, px.url(dbURL))
			f.end = time.Now().Add(2 * time.Second) // the dead worker's lease
		}
		faults = append(faults, f)
	}
	<-ctx.Done()
	wg.Wait()

	all := rec.all()
	if n, first := problems(all); n > 0 {
		t.Errorf("%d bad responses; first: %q", n, first)
	}
	inCut := func(r result) bool {
		for _, f := range faults {
			if f.kind == "database cut 2s" && !r.start.Add(r.dur).Before(f.start) && r.start.Before(f.end.Add(3*time.Second)) {
				return true
			}
		}
		return false
	}
	var stray []string
	var n503 int
	for _, r := range all {
		if r.status == http.StatusServiceUnavailable {
			n503++
			if !inCut(r) {
				stray = append(stray, fmt.Sprintf("%s %s at +%v", r.method, r.path, r.start.Sub(start).Round(time.Millisecond)))
			}
		}
	}
	if len(stray) > 0 {
		t.Errorf("%d 503s outside a database cut (+3 s): %q", len(stray), stray[:min(5, len(stray))])
	}
	t.Logf("soak %v, %d users, %d faults: %d requests %v; %d created jobs; %d 503s, all answered during a cut or within 3 s of its end", dur, users, len(faults), len(all), summarize(all), len(created.list()), n503)
	for i, f := range faults {
		t.Logf("fault %d (%s at +%v): polls before %v", i+1, f.kind, f.start.Sub(start).Round(time.Second), summarize(window(all, f.start.Add(-2*time.Second), f.start, isPoll)))
		t.Logf("    during %v", summarize(window(all, f.start, f.end, isPoll)))
		t.Logf("    after  %v", summarize(window(all, f.end, f.end.Add(2*time.Second), isPoll)))
	}
	waitAllTerminal(t, direct, 40*time.Second)
	rep := audit(t, direct, created.list())
	t.Logf("audit: %v", rep)
	var dropped, writeFailed, rescued int
	for _, w := range workers {
		dropped += w.count("outcome dropped")
		writeFailed += w.count("write outcome failed")
		rescued += w.count("rescued jobs of lost workers")
	}
	t.Logf("surviving workers' logs: %d outcomes dropped (lease lost), %d outcome writes failed, %d rescues", dropped, writeFailed, rescued)
}

// follow watches a job the way a client would, by one of three styles,
// until it is finished or limit passes.
func follow(c *client, rec *recorder, id string, style int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	path := "/api/jobs/" + id
	etag := ""
	if style == 2 {
		// A user's think time: the cancel lands at a random point of the job's life.
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		rec.add(c.do(http.MethodPost, path+"/cancel", nil))
	}
	for time.Now().Before(deadline) {
		var r result
		if style == 1 && etag != "" {
			r = c.do(http.MethodGet, path+"?waitSeconds=2", nil, "If-None-Match", etag)
		} else {
			r = c.do(http.MethodGet, path, nil, "If-None-Match", etag)
		}
		rec.add(r)
		if r.status == http.StatusOK {
			etag = r.hdr.Get("ETag")
			if j, ok := r.job(); ok && terminal(j.Status) {
				return
			}
		}
		if style != 1 || r.status != http.StatusOK && r.status != http.StatusNotModified {
			// A client's poll pace (the load's shape), not a wait for a condition.
			time.Sleep(250 * time.Millisecond)
		}
	}
}
