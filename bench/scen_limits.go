package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// LimitsResult is the limits scenario: the warm status read through several
// `jobsd serve` processes that share a registry, with the deployment-wide
// per-user limits off and on, in alternating passes.
type LimitsResult struct {
	Jobs         int     `json:"jobs"`
	Users        int     `json:"users"`
	APIProcesses int     `json:"apiProcesses"`
	Concurrency  int     `json:"concurrency"`
	PassSeconds  float64 `json:"passSeconds"`
	// OffEnv and OnEnv are the settings of the two groups of processes.
	OffEnv []string    `json:"offEnv"`
	OnEnv  []string    `json:"onEnv"`
	Off    LoadSummary `json:"off"`
	On     LoadSummary `json:"on"`
	// Runs holds the "off" and "on" passes in the order they ran: off,
	// on, off, ..., off (one more off than on).
	Runs      map[string][]LoadResult `json:"runs"`
	OnOverOff Spread                  `json:"onOverOff"`
	// TooMany counts the 429s of every pass: any makes the run invalid,
	// since the limits are set so that nothing should be refused.
	TooMany int64 `json:"tooManyRequests"`
}

type limitsOpts struct {
	jobs, users int
	procs       int // API processes per group, all counted by the registry
	conc        int
	dur         time.Duration
	pairs       int
	dbMaxConns  int
}

var (
	// limitsOff turns the per-user limits off.
	limitsOff = []string{"JOBS_RATE_READ=0", "JOBS_RATE_CREATE=0", "JOBS_USER_WAITERS=0"}
	// limitsOn turns them on, so high that no request is refused even with
	// each process holding a third of them: every read takes a token from
	// its user's bucket as it would at the defaults (50/s, burst 100), and
	// the bench can still tell a refusal from the cost.
	limitsOn = []string{"JOBS_RATE_READ=1000000", "JOBS_RATE_READ_BURST=1000000",
		"JOBS_RATE_CREATE=1000000", "JOBS_RATE_CREATE_BURST=1000000", "JOBS_USER_WAITERS=1000000"}
)

// runLimitsScenario seeds two identical tables, starts o.procs API processes
// on each (limits off on one, on on the other; each group counts o.procs
// live processes), warms every process, then alternates warm passes off,
// on, off, ..., off, each through every process of its group.
func runLimitsScenario(ctx context.Context, e *env, iss *tokenIssuer, o limitsOpts) (*LimitsResult, error) {
	res := &LimitsResult{Users: o.users, APIProcesses: o.procs, Concurrency: o.conc, PassSeconds: o.dur.Seconds(),
		OffEnv: limitsOff, OnEnv: limitsOn, Runs: map[string][]LoadResult{}}
	groups := map[string]*apiGroup{}
	defer func() {
		for _, g := range groups {
			g.stop()
		}
	}()
	targets := map[string]statusTarget{}
	for _, k := range []struct {
		key string
		env []string
	}{{"off", limitsOff}, {"on", limitsOn}} {
		t, _, err := seedTarget(ctx, e, statusOpts{db: "limits_" + k.key, jobs: o.jobs, users: o.users})
		if err != nil {
			return nil, err
		}
		g, err := startAPIGroup(ctx, e, iss, t, o.procs, o.dbMaxConns, "serve-limits-"+k.key, k.env)
		if err != nil {
			return nil, err
		}
		groups[k.key], targets[k.key], res.Jobs = g, t, t.ix.numJobs
	}
	tokens, err := iss.mint(targets["off"].ix.users) // user-0, user-1, ... in both tables
	if err != nil {
		return nil, err
	}
	for key, g := range groups {
		if err := g.warm(ctx, targets[key].ix, tokens); err != nil {
			return nil, err
		}
	}
	measure := func(key string, dur time.Duration) (LoadResult, int64) {
		lc := newSpreadClient(groups[key].bases)
		defer lc.close()
		return runLoad(ctx, lc, o.conc, dur, 0, targets[key].ix.anyJob(tokens)), lc.tooMany.Load()
	}
	// A short pass of each first, not counted: the first pass after the
	// warm-up ran slower than the rest in three of four trial runs.
	measure("off", o.dur/2)
	measure("on", o.dur/2)
	pass := func(key string) func(int) (float64, error) {
		return func(i int) (float64, error) {
			r, tooMany := measure(key, o.dur)
			res.Runs[key] = append(res.Runs[key], r)
			res.TooMany += tooMany
			logf("  limits %s run %d c=%d: %.0f req/s p50 %.2fms p99 %.2fms errors %d (429s %d) %s", key, i+1, o.conc,
				r.PerSec, r.P50ms, r.P99ms, r.Errors, tooMany, r.FirstError)
			return r.PerSec, groups[key].exited()
		}
	}
	ratios, err := alternate(o.pairs, pass("off"), pass("on"))
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		if err := g.countedThroughout(o.procs); err != nil {
			return nil, err
		}
	}
	res.Off, res.On, res.OnOverOff = summarizeRuns(res.Runs["off"]), summarizeRuns(res.Runs["on"]), spread(ratios)
	return res, nil
}

// failed counts the requests of the counted passes that did not get their
// 200, 429s included.
func (l *LimitsResult) failed() int { return l.Off.Errors + l.On.Errors }

// apiGroup is several `jobsd serve` processes on one database.
type apiGroup struct {
	procs []*proc
	bases []string
}

// registryPlaceholder names the bench's i-th placeholder entry in the
// registry of live API processes.
func registryPlaceholder(i int) string { return fmt.Sprintf("bench-placeholder-%d", i) }

// startAPIGroup starts n `jobsd serve` processes on t's database such that
// each divides the per-user limits by n from the start, and checks that it
// does. A process writes its first heartbeat (and reads the count) before it
// is ready, then every 10 s; started one after another, the first would
// count 1 until its next heartbeat. So the bench holds n-1 placeholder
// entries and removes one before each later process starts: every process
// counts n from its first heartbeat (countedThroughout checks that it never
// counted otherwise, as one could in the moment between a removal and the
// next start).
func startAPIGroup(ctx context.Context, e *env, iss *tokenIssuer, t statusTarget, n, dbMaxConns int, name string, env []string) (*apiGroup, error) {
	pool, err := pgxpool.New(ctx, t.url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	for i := 1; i < n; i++ {
		if _, err := pool.Exec(ctx, `INSERT INTO api_processes (id, host, pid, started_at) VALUES ($1, 'bench', 0, now())`,
			registryPlaceholder(i)); err != nil {
			return nil, fmt.Errorf("registry placeholder: %w", err)
		}
	}
	counted := regexp.MustCompile(fmt.Sprintf(`"msg":"api replicas","count":%d,`, n))
	// info logs a line per rejected token and per change of the count only.
	env = append(append([]string(nil), env...), "JOBS_LOG_LEVEL=info")
	g := &apiGroup{}
	for i := range n {
		if i > 0 {
			if _, err := pool.Exec(ctx, `DELETE FROM api_processes WHERE id = $1`, registryPlaceholder(i)); err != nil {
				g.stop()
				return nil, fmt.Errorf("registry placeholder: %w", err)
			}
		}
		p, base, err := e.startServe(ctx, fmt.Sprintf("%s-%d", name, i), t.url, iss.srv.URL, dbMaxConns, env...)
		if err != nil {
			g.stop()
			return nil, err
		}
		g.procs, g.bases = append(g.procs, p), append(g.bases, base)
		if n == 1 {
			continue
		}
		if _, err := p.WaitLine(counted, 5*time.Second); err != nil {
			g.stop()
			return nil, fmt.Errorf("%s does not count %d API processes: %w", p.Name, n, err)
		}
	}
	return g, nil
}

// warm reads every job once from every process of the group, with its
// owner's token: each process then holds every token verified and every
// finished job in its cache, as a long-running API does, and the passes that
// follow see the same process whatever their order. (Warmed by its tokens
// only, a process fills its finished-job cache during the passes, and each
// pass ran faster than the one before.)
func (g *apiGroup) warm(ctx context.Context, ix *jobIndex, tokens []string) error {
	for i, base := range g.bases {
		if r := runLoad(ctx, newLeanClient(base, 64), 64, 2*time.Minute, ix.numJobs, ix.everyJob(tokens)); r.Errors > 0 {
			return fmt.Errorf("warming %s: %d of %d requests failed, first: %s", g.procs[i].Name, r.Errors, r.Requests, r.FirstError)
		}
	}
	return nil
}

// replicasLine is the line a process logs (at info) when the number of API
// processes it counts changes, first from 1.
var replicasLine = regexp.MustCompile(`"msg":"api replicas","count":(\d+),`)

// countedThroughout checks that no process of the group counted other than
// n API processes since its first heartbeat.
func (g *apiGroup) countedThroughout(n int) error {
	for _, p := range g.procs {
		for _, l := range p.Lines() {
			if m := replicasLine.FindStringSubmatch(l); m != nil && m[1] != strconv.Itoa(n) {
				return fmt.Errorf("%s counted %s API processes, not %d: %s", p.Name, m[1], n, l)
			}
		}
	}
	return nil
}

// exited says which process of the group ended, if any did.
func (g *apiGroup) exited() error {
	for _, p := range g.procs {
		if p.exited() {
			return fmt.Errorf("%s exited: %w\n%s", p.Name, p.Err(), p.logTail())
		}
	}
	return nil
}

func (g *apiGroup) stop() {
	for _, p := range g.procs {
		p.stop()
	}
	g.procs = nil
}

// everyJob polls job seq of the index, with its owner's token.
func (ix *jobIndex) everyJob(tokens []string) func(*mrand.Rand, int) poll {
	var jobs [][2]int // user, index
	for u := range ix.idStr {
		for i := range ix.idStr[u] {
			jobs = append(jobs, [2]int{u, i})
		}
	}
	return func(_ *mrand.Rand, seq int) poll {
		j := jobs[seq]
		return poll{token: tokens[j[0]], id: ix.idStr[j[0]][j[1]], want: http.StatusOK}
	}
}

// spreadClient connects each load-generator worker to the next of several
// API processes in turn, as a load balancer spreads connections: every
// process sees every user's requests. It counts the 429s.
type spreadClient struct {
	clients []loadClient
	next    atomic.Int64
	tooMany atomic.Int64
}

func newSpreadClient(bases []string) *spreadClient {
	c := &spreadClient{}
	for _, b := range bases {
		c.clients = append(c.clients, newLeanClient(b, 0))
	}
	return c
}

func (c *spreadClient) newPoller() poller {
	i := int(c.next.Add(1)-1) % len(c.clients)
	return &countingPoller{poller: c.clients[i].newPoller(), tooMany: &c.tooMany}
}

func (c *spreadClient) close() {
	for _, lc := range c.clients {
		lc.close()
	}
}

// countingPoller counts the 429s its poller gets.
type countingPoller struct {
	poller
	tooMany *atomic.Int64
}

func (p *countingPoller) get(path, token, ifNoneMatch string) (int, error) {
	status, err := p.poller.get(path, token, ifNoneMatch)
	if status == http.StatusTooManyRequests {
		p.tooMany.Add(1)
	}
	return status, err
}
