package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/store"
)

// The read replica suite: jobsd serve with JOBS_READ_DATABASE_URL naming a
// real streaming standby, made by the test from the PostgreSQL binaries
// (pg_basebackup -R from a binaries primary of the test's own: a container's
// pg_hba.conf does not allow replication). Which database answered comes from
// the process's own counters on /metrics.

// replicaRig is a primary, its standby, a migrated database on them, and
// jobsd serve reading from the standby.
type replicaRig struct {
	primary *pgserver.Server
	standby *pgserver.Standby
	dbURL   string // the test's database on the primary
	direct  *sqlx.DB
	replica string // its name on /metrics: host:port/database of the standby
	iss     *issuer
	api     *proc
	c       *client
}

// requireReplicaHarness skips the suite under -short, and where the
// PostgreSQL binaries are missing, unless CI requires the full suite
// (JOBS_TEST_REQUIRE_DOCKER=1): then it fails.
func requireReplicaHarness(t testing.TB) {
	t.Helper()
	proctest.SkipShort(t, "read replica")
	if _, err := pgserver.FindBinaries(); err != nil {
		msg := fmt.Sprintf("the read replica suite needs the PostgreSQL server binaries (initdb, postgres, pg_basebackup; Debian: apt-get install postgresql): %v", err)
		if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// newReplicaRig starts a primary, migrates a database on it, makes a
// standby with opts and starts jobsd serve on the primary reading from the
// standby, with env added.
func newReplicaRig(t testing.TB, opts pgserver.StandbyOptions, env ...string) *replicaRig {
	t.Helper()
	requireReplicaHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, err := pgserver.StartBinaries(ctx)
	if err != nil {
		t.Fatalf("start the primary: %v", err)
	}
	t.Cleanup(func() { primary.Close() })
	const name = "jobsd_replica"
	dbURL, err := primary.CreateDatabase(ctx, name, "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.MigrateUp(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db.Close()
	standby, err := pgserver.StartStandby(ctx, primary, opts)
	if err != nil {
		t.Fatalf("start the standby: %v", err)
	}
	t.Cleanup(func() {
		if err := standby.Close(); err != nil {
			t.Logf("stop the standby: %v", err)
		}
	})
	r := &replicaRig{primary: primary, standby: standby, dbURL: dbURL, iss: newIssuer(t), direct: openDirect(t, dbURL)}
	readURL := standby.DatabaseURL(name)
	r.replica = strings.TrimPrefix(strings.SplitN(readURL, "?", 2)[0], "postgres://postgres@")
	r.api = startServe(t, dbURL, r.iss, append([]string{
		"JOBS_READ_DATABASE_URL=" + readURL,
		"JOBS_METRICS_ADDR=127.0.0.1:0",
	}, env...)...)
	r.c = newClient("http://"+r.api.Addr, r.iss.token(keyA, "alice", true))
	return r
}

// metric reads one series from the API's /metrics: name with exactly the
// labels given (`replica="..."`), 0 when absent.
func (r *replicaRig) metric(t testing.TB, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.api.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// reads is where status reads and lists went so far.
type reads struct {
	primary, replica, lists float64
	fallbacks               map[string]float64
}

func (r *replicaRig) reads(t testing.TB) reads {
	t.Helper()
	lbl := `replica="` + r.replica + `"`
	out := reads{
		primary:   r.metric(t, "jobsd_primary_status_reads_total", ""),
		replica:   r.metric(t, "jobsd_read_replica_status_reads_total", lbl),
		lists:     r.metric(t, "jobsd_read_replica_list_pages_total", lbl),
		fallbacks: map[string]float64{},
	}
	for _, reason := range store.FallbackReasons() {
		out.fallbacks[reason] = r.metric(t, "jobsd_read_fallbacks_total", `reason="`+reason+`"`)
	}
	return out
}

// inUse reports whether the API sends reads to the standby now.
func (r *replicaRig) inUse(t testing.TB) bool {
	return r.metric(t, "jobsd_read_replica_in_use", `replica="`+r.replica+`"`) == 1
}

// waitInUse waits until the API's reads go to the standby (want) or not.
func (r *replicaRig) waitInUse(t testing.TB, want bool, within time.Duration) {
	t.Helper()
	eventually.True(t, within, fmt.Sprintf("jobsd_read_replica_in_use = %v", want), func() bool { return r.inUse(t) == want })
}

// readyz reads the API's /readyz: its status and its read replicas.
func (r *replicaRig) readyz(t testing.TB) (int, []gen.ReadReplica) {
	t.Helper()
	res := r.c.do(http.MethodGet, "/readyz", nil)
	var body gen.Ready
	if err := json.Unmarshal(res.body, &body); err != nil && res.status == http.StatusOK {
		t.Fatalf("/readyz: %v in %s", err, res.body)
	}
	if body.ReadReplicas == nil {
		return res.status, nil
	}
	return res.status, *body.ReadReplicas
}

// wantReadyz checks that /readyz is 200 and lists the standby as in use
// or not.
func (r *replicaRig) wantReadyz(t testing.TB, inUse bool) {
	t.Helper()
	status, replicas := r.readyz(t)
	if status != http.StatusOK || len(replicas) != 1 || replicas[0].Name != r.replica || replicas[0].InUse != inUse {
		t.Fatalf("/readyz = %d %+v, want 200 and %s in use %v", status, replicas, r.replica, inUse)
	}
	if inUse && (replicas[0].LagSeconds == nil || *replicas[0].LagSeconds < 0) {
		t.Errorf("/readyz: lag of a replica in use %v", replicas[0].LagSeconds)
	}
}

// created creates a job (an AI preview of prompt) and returns its id.
func (r *replicaRig) created(t testing.TB, prompt string) uuid.UUID {
	t.Helper()
	res := r.c.create(prompt)
	j, ok := res.job()
	if !ok || res.status != http.StatusAccepted {
		t.Fatalf("create: %d %s %v", res.status, res.body, res.err)
	}
	return j.ID
}

// poll is GET /api/jobs/{id}, with an If-None-Match when etag is set.
func (r *replicaRig) poll(id uuid.UUID, etag string, query string) result {
	hdr := []string{}
	if etag != "" {
		hdr = append(hdr, "If-None-Match", etag)
	}
	return r.c.do(http.MethodGet, "/api/jobs/"+id.String()+query, nil, hdr...)
}

// primaryStatus reads the job's status on the primary.
func (r *replicaRig) primaryStatus(t testing.TB, id uuid.UUID) string {
	t.Helper()
	var st string
	if err := r.direct.Get(&st, `SELECT status FROM jobs WHERE id = $1`, id); err != nil {
		t.Fatalf("read the job on the primary: %v", err)
	}
	return st
}

// TestReadReplicaRouting: with a current standby, polls (200 and 304),
// long polls and lists of unfinished jobs are answered by the standby and
// send nothing to the primary.
func TestReadReplicaRouting(t *testing.T) {
	r := newReplicaRig(t, pgserver.StandbyOptions{})
	r.waitInUse(t, true, 10*time.Second)
	r.wantReadyz(t, true)
	var ids []uuid.UUID
	for i := range 5 {
		ids = append(ids, r.created(t, fmt.Sprintf("Routing %d. Maize prices fell.", i)))
	}
	if err := r.standby.WaitReplayed(t.Context(), r.dbURL); err != nil {
		t.Fatal(err)
	}
	// The API must see the replica as fresh since the creations: its next
	// check after them.
	r.waitInUse(t, true, 10*time.Second)
	before := r.reads(t)
	const rounds = 10
	for range rounds {
		for _, id := range ids {
			res := r.poll(id, "", "")
			if res.status != http.StatusOK {
				t.Fatalf("poll: %d %s %v", res.status, res.body, res.err)
			}
			if res304 := r.poll(id, res.hdr.Get("ETag"), ""); res304.status != http.StatusNotModified {
				t.Fatalf("poll with its ETag: %d %s", res304.status, res304.body)
			}
		}
	}
	long := r.poll(ids[0], r.poll(ids[0], "", "").hdr.Get("ETag"), "?waitSeconds=1")
	if long.status != http.StatusNotModified {
		t.Fatalf("long poll of an unchanged job: %d %s", long.status, long.body)
	}
	list := r.c.do(http.MethodGet, "/api/jobs?limit=100", nil)
	if list.status != http.StatusOK || strings.Count(string(list.body), `"id"`) != len(ids) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	after := r.reads(t)
	polls := float64(2*rounds*len(ids) + 2)
	t.Logf("%v polls, %v list: standby status reads +%v, list pages +%v; primary status reads +%v",
		polls, 1, after.replica-before.replica, after.lists-before.lists, after.primary-before.primary)
	if got := after.primary - before.primary; got != 0 {
		t.Errorf("the primary answered %v status reads, want 0 (fallbacks %v -> %v)", got, before.fallbacks, after.fallbacks)
	}
	if got := after.replica - before.replica; got < polls {
		t.Errorf("the standby answered %v status reads of %v sequential polls (at least one each: a long poll reads twice)", got, polls)
	}
	if got := after.lists - before.lists; got != 1 {
		t.Errorf("the standby served %v list pages, want 1", got)
	}
}

// TestReadReplicaNeverBackwards: with a standby that replays every commit
// 2 s late (and a lag limit that keeps it in use), a job created and polled
// at once is no 404; once the standby has the jobs, a worker completes them,
// and a long poll from the first version wakes with the change, a poll with
// the ETag from before the completion sees it COMPLETED, and a poll with the
// newest ETag is a 304: the primary answers, not the standby's older copy.
func TestReadReplicaNeverBackwards(t *testing.T) {
	r := newReplicaRig(t, pgserver.StandbyOptions{ApplyDelay: 2 * time.Second}, "JOBS_READ_MAX_LAG=1m")
	r.waitInUse(t, true, 10*time.Second)

	var jobs []uuid.UUID
	for i := range 3 {
		id := r.created(t, fmt.Sprintf("Backwards %d. Rainfall was low.", i))
		if first := r.poll(id, "", ""); first.status != http.StatusOK {
			t.Fatalf("poll at once after the create: %d %s (want 200: the standby has no such job yet, the primary has)", first.status, first.body)
		}
		jobs = append(jobs, id)
	}
	standby := openDirect(t, r.standby.DatabaseURL("jobsd_replica"))
	eventually.True(t, 10*time.Second, "the standby has the jobs", func() bool {
		var n int
		return standby.Get(&n, `SELECT count(*) FROM jobs`) == nil && n == len(jobs)
	})
	old := map[uuid.UUID]string{}
	for _, id := range jobs {
		res := r.poll(id, "", "")
		if j, _ := res.job(); res.status != http.StatusOK || j.Status != "PENDING" {
			t.Fatalf("poll: %d %s", res.status, res.body)
		}
		old[id] = res.hdr.Get("ETag")
	}

	// A long poll from the first version, then the worker completes the
	// jobs; the standby replays each completion 2 s late.
	long := make(chan result, 1)
	go func() { long <- r.poll(jobs[0], old[jobs[0]], "?waitSeconds=20") }()
	eventually.True(t, 10*time.Second, "the long poll waiting", func() bool { return openStreams(t, r.api.MetricsAddr, "long_poll") == 1 })
	began := time.Now()
	startWorker(t, r.dbURL)
	woken := <-long
	if woken.status != http.StatusOK || woken.hdr.Get("ETag") == old[jobs[0]] {
		t.Fatalf("long poll: %d %s", woken.status, woken.body)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("long poll answered %v after the worker started", d)
	}
	for _, id := range jobs {
		eventually.True(t, 10*time.Second, "the job completed on the primary", func() bool {
			return r.primaryStatus(t, id) == "COMPLETED"
		})
		done := r.poll(id, old[id], "")
		if dj, _ := done.job(); done.status != http.StatusOK || dj.Status != "COMPLETED" {
			t.Fatalf("poll with the ETag from before the completion: %d %s, want 200 COMPLETED", done.status, done.body)
		}
		if again := r.poll(id, done.hdr.Get("ETag"), ""); again.status != http.StatusNotModified {
			t.Fatalf("poll with the COMPLETED ETag: %d %s, want 304", again.status, again.body)
		}
	}
	f := r.reads(t).fallbacks
	t.Logf("fallbacks: %v", f)
	if f[store.FallbackNotFound] == 0 {
		t.Errorf("no not_found fallback counted: %v", f)
	}
	if f[store.FallbackChanged] == 0 {
		t.Errorf("no changed fallback counted: %v", f)
	}
}

// TestReadReplicaMaxLag: a standby further behind than JOBS_READ_MAX_LAG
// serves nothing; reads go back to it once it has caught up.
func TestReadReplicaMaxLag(t *testing.T) {
	r := newReplicaRig(t, pgserver.StandbyOptions{ApplyDelay: 3 * time.Second}, "JOBS_READ_MAX_LAG=300ms")
	r.waitInUse(t, true, 10*time.Second)
	id := r.created(t, "Lag. Farmers sold early.")
	// The create is a commit the standby replays 3 s late: past 300 ms it
	// is out of use.
	r.waitInUse(t, false, 3*time.Second)
	if lag := r.metric(t, "jobsd_read_replica_lag_seconds", `replica="`+r.replica+`"`); lag < 0.3 {
		t.Errorf("lag %v s while out of use, want at least 0.3", lag)
	}
	before := r.reads(t)
	for range 5 {
		if res := r.poll(id, "", ""); res.status != http.StatusOK {
			t.Fatalf("poll: %d %s", res.status, res.body)
		}
	}
	after := r.reads(t)
	if after.replica != before.replica || after.primary-before.primary < 5 {
		t.Errorf("with the standby out of use: standby +%v, primary +%v status reads; want 0 and 5",
			after.replica-before.replica, after.primary-before.primary)
	}
	if after.fallbacks[store.FallbackNoReplica]-before.fallbacks[store.FallbackNoReplica] < 5 {
		t.Errorf("no_replica fallbacks %v -> %v, want 5 more", before.fallbacks, after.fallbacks)
	}
	// Caught up (and no commit since), the standby serves again.
	r.waitInUse(t, true, 15*time.Second)
	before = r.reads(t)
	if res := r.poll(id, "", ""); res.status != http.StatusOK {
		t.Fatalf("poll: %d %s", res.status, res.body)
	}
	if after := r.reads(t); after.replica-before.replica != 1 {
		// The API's registry heartbeat (every 10 s) is a commit too, which
		// may take the standby out of use again for a moment.
		t.Logf("after the catch-up the poll went to the primary (a heartbeat commit meanwhile?): %v -> %v", before, after)
	}
}

// TestReadReplicaStopStart: under load (creates, polls, long polls, a
// worker completing jobs), the standby is stopped and started again. No
// request fails: reads move to the primary while it is away and back to it
// when it returns.
func TestReadReplicaStopStart(t *testing.T) {
	r := newReplicaRig(t, pgserver.StandbyOptions{})
	startWorker(t, r.dbURL)
	r.waitInUse(t, true, 10*time.Second)

	ctx, stop := context.WithCancel(context.Background())
	var rec recorder
	var created ids
	load := runLoad(ctx, r.c, &rec, &created, 2, 4, 100000)
	var longPolls sync.WaitGroup
	var longAnswered atomic.Int64
	for w := range 2 {
		longPolls.Add(1)
		go func() {
			defer longPolls.Done()
			for k := w; ctx.Err() == nil; k += 2 {
				id := created.pick(k * 104729)
				if id == uuid.Nil {
					sleepCtx(ctx, 20*time.Millisecond)
					continue
				}
				first := r.poll(id, "", "")
				rec.add(first)
				if etag := first.hdr.Get("ETag"); etag != "" && ctx.Err() == nil {
					rec.add(r.poll(id, etag, "?waitSeconds=2"))
					longAnswered.Add(1)
				}
			}
		}()
	}
	served := func() float64 { return r.reads(t).replica }
	base := served()
	eventually.True(t, 20*time.Second, "the standby serving reads under load", func() bool { return served() > base+20 })

	if err := r.standby.Stop(); err != nil {
		t.Fatalf("stop the standby: %v", err)
	}
	stoppedAt := time.Now()
	r.waitInUse(t, false, 5*time.Second)
	r.wantReadyz(t, false) // still ready: reads go to the primary
	n := len(rec.all())
	eventually.True(t, 20*time.Second, "50 more requests answered with the standby away", func() bool { return len(rec.all()) >= n+50 })

	if err := r.standby.Start(context.Background()); err != nil {
		t.Fatalf("start the standby again: %v", err)
	}
	startedAt := time.Now()
	r.waitInUse(t, true, 20*time.Second)
	base = served()
	eventually.True(t, 20*time.Second, "the standby serving reads again", func() bool { return served() > base+20 })
	stop()
	load.Wait()
	longPolls.Wait()

	all := rec.all()
	during := window(all, stoppedAt, startedAt, nil)
	nProblems, first := problems(all)
	notFound := 0
	for _, res := range all {
		if res.status == http.StatusNotFound {
			notFound++
		}
	}
	f := r.reads(t).fallbacks
	t.Logf("%d requests (%d while the standby was away, %d long polls); fallbacks %v", len(all), len(during), longAnswered.Load(), f)
	if nProblems > 0 || notFound > 0 {
		t.Fatalf("%d failed requests and %d 404s; first: %s", nProblems, notFound, strings.Join(first, "\n"))
	}
	if len(during) == 0 {
		t.Fatal("no request was made while the standby was away")
	}
	if n := r.api.count("request failed"); n > 0 {
		t.Errorf("the API logged %d failed requests", n)
	}
}
