package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PollGoalsResult is the poll path against its limits (issue 23, item 1),
// every figure through net/http's client, each cell a few seconds, the
// cells of one repeat back to back:
//   - a finished job's poll (answered from the API's finished-job cache,
//     no database) against a fixed-reply Go HTTP server sending the same
//     bytes, at FinishedConc;
//   - an unfinished job's poll (a database read) against the composed
//     limit 1/(1/pgbench -S + 1/fixed reply), at UnfinishedConc.
type PollGoalsResult struct {
	Jobs           int     `json:"jobs"`
	Users          int     `json:"users"`
	CellSeconds    float64 `json:"cellSeconds"`
	FinishedJobs   int     `json:"finishedJobsPolled"` // the cached set, warmed before timing
	UnfinishedJobs int     `json:"unfinishedJobsPolled"`
	FinishedConc   []int   `json:"finishedConcurrency"`
	UnfinishedConc []int   `json:"unfinishedConcurrency"`
	PgbenchScale   int     `json:"pgbenchScale"`
	// PgbenchClients is pgbench's -c per concurrency: at most
	// maxPgbenchClients (the server allows 200 connections, and jobsd's
	// pool is open beside it).
	PgbenchClients map[int]int `json:"pgbenchClients"`
	// Runs holds every cell per repeat: fixed<c>, finished<c>,
	// unfinished<c>; Pgbench the pgbench -S runs per concurrency.
	Runs    map[string][]LoadResult `json:"runs"`
	Pgbench map[int][]PgbenchRun    `json:"pgbench"`
	// CPUPerRequest is, per cell of Runs and repeat, the answering
	// server's CPU time (user + system, /proc/pid/stat) per request, in
	// µs: jobsd serve's for the polls, the fixed-reply server's for it.
	// Unlike the rates it hardly moves when other work takes the cores.
	CPUPerRequest map[string][]float64 `json:"cpuMicrosPerRequest"`
	// PostgresCPUPerRequest is, per cell that reads the database
	// (unfinished<c>, node<c>, pgbench<c>) and repeat, PostgreSQL's CPU time
	// (every server process, work.go's serverCPU) per request or
	// transaction, in µs: what the composed limit's pgbench -S costs the
	// server, beside what a poll does.
	PostgresCPUPerRequest map[string][]float64 `json:"postgresCpuMicrosPerRequest"`
	// MachineIdle is, per cell of Runs and repeat, the share of the
	// machine's CPU time left idle during it (/proc/stat): near 0 a cell is
	// bound by CPU, well above it by waits between the processes.
	MachineIdle map[string][]float64 `json:"machineIdle"`
	// SleepsPerRequest is, per cell of Runs with a server process and
	// repeat, that process's context switches (every thread's, voluntary:
	// it went to sleep) per request: each one a wake-up paid later.
	SleepsPerRequest map[string][]float64 `json:"serverSleepsPerRequest"`
	// FinishedOverFixed and UnfinishedOverComposed are the goals' ratios,
	// taken per repeat (same run), then the median.
	FinishedOverFixed      map[int]Spread `json:"finishedOverFixed"`
	UnfinishedOverComposed map[int]Spread `json:"unfinishedOverComposed"`
	ComposedPerSec         map[int]Spread `json:"composedLimitPerSec"`
	// BareOverComposed is, per bare-read server's driver (barereads.go;
	// its cells are bare-<driver><c> in Runs), its rate ÷ the composed
	// limit per repeat: how much of the limit a server that does nothing
	// but one read per poll reaches on this machine. UnfinishedOverBare is
	// jobsd's unfinished poll ÷ that server's rate: what jobsd's own work
	// costs. Not goals: the floor under the unfinished-poll goal.
	BareOverComposed map[string]map[int]Spread `json:"bareReadOverComposed"`
	// BestBareOverComposed is the faster bare-read server's rate ÷ the
	// composed limit, per repeat (bestBare).
	BestBareOverComposed map[int]Spread            `json:"bestBareReadOverComposed"`
	UnfinishedOverBare   map[string]map[int]Spread `json:"unfinishedOverBareRead"`
	// NodePeer is the Node peer's setup and ratios (scen_nodepeer.go); its
	// cells are node<c> in Runs.
	NodePeer *NodePeerResult `json:"nodePeer"`
	// ServeEnv is what -serve-gogc added to jobsd serve's environment.
	ServeEnv []string `json:"serveEnv,omitempty"`
}

// PgbenchRun is one `pgbench -S` run.
type PgbenchRun struct {
	Clients      int     `json:"clients"`
	TPS          float64 `json:"tps"`
	LatencyAvgMs float64 `json:"latencyAvgMs"`
}

type pollGoalsOpts struct {
	db             string
	jobs, users    int
	finishedConc   []int
	unfinishedConc []int
	dur            time.Duration
	repeats        int
	dbMaxConns     int
	pgbenchScale   int
}

// maxPgbenchClients keeps pgbench within the server's max_connections (200)
// beside jobsd's pool, as the raw pgx pass does.
const maxPgbenchClients = 150

// pollSubset bounds the jobs of each kind a pass polls: the finished ones are
// all warmed into the API's cache (100,000 jobs) before timing.
const pollSubset = 20_000

// pollServeEnv is more environment for jobsd serve in the poll goals
// (-serve-gogc).
var pollServeEnv []string

func runPollGoals(ctx context.Context, e *env, iss *tokenIssuer, o pollGoalsOpts) (*PollGoalsResult, error) {
	target, _, err := seedTarget(ctx, e, o.statusOpts())
	if err != nil {
		return nil, err
	}
	ix := target.ix
	finished, unfinished := ix.subsets(pollSubset)
	res := &PollGoalsResult{Jobs: ix.numJobs, Users: o.users, CellSeconds: o.dur.Seconds(), FinishedJobs: len(finished),
		UnfinishedJobs: len(unfinished), FinishedConc: o.finishedConc, UnfinishedConc: o.unfinishedConc,
		PgbenchScale: o.pgbenchScale, PgbenchClients: map[int]int{}, Runs: map[string][]LoadResult{}, CPUPerRequest: map[string][]float64{},
		PostgresCPUPerRequest: map[string][]float64{}, MachineIdle: map[string][]float64{}, SleepsPerRequest: map[string][]float64{},
		Pgbench: map[int][]PgbenchRun{}, NodePeer: prepareNodePeer(ctx, o.dbMaxConns), ServeEnv: pollServeEnv}
	if len(finished) == 0 || len(unfinished) == 0 {
		return nil, errors.New("poll goals: the seeded table has no finished or no unfinished jobs")
	}
	pgbURL, err := e.createDB(ctx, o.db+"_pgbench", false)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(o.pgbenchScale), pgbURL).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %w: %s", err, lastLines(string(out), 3))
	}
	logf("  pgbench -i -s %d in %.1fs", o.pgbenchScale, time.Since(t0).Seconds())

	for rep := range o.repeats {
		if err := res.repeat(ctx, e, iss, target, o, rep, finished, unfinished, pgbURL); err != nil {
			return nil, err
		}
	}
	res.summarize()
	return res, nil
}

func (o pollGoalsOpts) statusOpts() statusOpts {
	return statusOpts{db: o.db, jobs: o.jobs, users: o.users}
}

// repeat measures every cell once on a fresh jobsd serve, a fresh
// fixed-reply server and a fresh Node peer. Within each pair of cells that
// make a ratio, which goes first alternates with the repeat.
func (res *PollGoalsResult) repeat(ctx context.Context, e *env, iss *tokenIssuer, t statusTarget, o pollGoalsOpts, rep int,
	finished, unfinished []poll, pgbURL string) error {
	srv, base, err := e.startServe(ctx, fmt.Sprintf("serve-%s-%d", o.db, rep), t.url, iss.srv.URL, o.dbMaxConns,
		append([]string{"JOBS_RATE_READ=0"}, pollServeEnv...)...)
	if err != nil {
		return err
	}
	defer srv.stop()
	tokens, err := iss.mint(t.ix.users)
	if err != nil {
		return err
	}
	finished, unfinished = withTokens(finished, tokens), withTokens(unfinished, tokens)
	api := newNetHTTPClient(base, 256)
	defer api.close()
	// Warm: every token verified once, every polled finished job cached.
	runLoad(ctx, api, 64, 2*time.Minute, len(tokens), t.ix.onePerUser(tokens))
	if r := runLoad(ctx, api, 64, 2*time.Minute, len(finished), inOrder(finished)); r.Errors > 0 {
		return fmt.Errorf("warming the finished-job cache: %d errors, first: %s", r.Errors, r.FirstError)
	}
	body, err := pollBody(base, finished[0])
	if err != nil {
		return err
	}
	fixedSrv, fixedBase, err := startFixedReply(body)
	if err != nil {
		return err
	}
	defer fixedSrv.stop()
	fixed := newNetHTTPClient(fixedBase, 256)
	defer fixed.close()
	node, err := res.startNodePeer(ctx, t, iss.srv.URL, base, tokens, finished, unfinished)
	if err != nil {
		return err
	}
	defer node.stop()

	fixedAt := map[int]bool{}
	apiPid, fixedPid := srv.Cmd.Process.Pid, fixedSrv.cmd.Process.Pid
	// cell measures one cell; pid is the server's process, whose CPU per
	// request is recorded (0: not measured).
	cell := func(key string, lc loadClient, pid, c int, polls []poll) {
		cpu0, sw0 := processTicks(pid), voluntarySwitches(pid)
		pg := res.postgresMeter(e, key)
		idle0, all0 := machineTicks()
		r := runLoad(ctx, lc, c, o.dur, 0, atRandom(polls))
		res.Runs[key] = append(res.Runs[key], r)
		idleText := ""
		if idle1, all1 := machineTicks(); all1 > all0 {
			idle := float64(idle1-idle0) / float64(all1-all0)
			res.MachineIdle[key] = append(res.MachineIdle[key], idle)
			idleText = fmt.Sprintf(" machine idle %.0f%%", 100*idle)
		}
		cpuText := ""
		if pid > 0 {
			cpu := float64(processTicks(pid)-cpu0) / clkTck * 1e6 / float64(max(1, r.Requests))
			res.CPUPerRequest[key] = append(res.CPUPerRequest[key], cpu)
			sleeps := float64(voluntarySwitches(pid)-sw0) / float64(max(1, r.Requests))
			res.SleepsPerRequest[key] = append(res.SleepsPerRequest[key], sleeps)
			cpuText = fmt.Sprintf(" server CPU %.1fµs/req, %.2f sleeps/req", cpu, sleeps)
		}
		cpuText += pg(r.Requests) + idleText
		logf("  polls rep %d %-13s c=%-3d %7.0f req/s p50 %.2fms p99 %.2fms%s errors %d %s", rep+1, key, c,
			r.PerSec, r.P50ms, r.P99ms, cpuText, r.Errors, r.FirstError)
	}
	fixedCell := func(c int) {
		if !fixedAt[c] {
			cell(fmt.Sprintf("fixed%d", c), fixed, fixedPid, c, finished)
			fixedAt[c] = true
		}
	}
	for _, c := range o.finishedConc {
		pair := []func(){func() { fixedCell(c) }, func() { cell(fmt.Sprintf("finished%d", c), api, apiPid, c, finished) }}
		runPair(pair, rep)
	}
	for _, c := range o.unfinishedConc {
		fixedCell(c)
		pgb := func() {
			pg := res.postgresMeter(e, fmt.Sprintf("pgbench%d", c))
			r, err := runPgbench(ctx, pgbURL, c, o.dur)
			if err != nil {
				logf("  polls rep %d pgbench c=%d: %v", rep+1, c, err)
				return
			}
			res.PgbenchClients[c] = r.Clients
			res.Pgbench[c] = append(res.Pgbench[c], r)
			// pgbench's own time (connecting, the report) is in the
			// meter's span too: tps × the run's length is the count.
			logf("  polls rep %d pgbench -S    c=%-3d %7.0f tps (%d clients) latency avg %.2fms%s", rep+1, c, r.TPS, r.Clients, r.LatencyAvgMs,
				pg(int(r.TPS*o.dur.Seconds())))
		}
		cells := []func(){pgb, func() { cell(fmt.Sprintf("unfinished%d", c), api, apiPid, c, unfinished) }}
		if node != nil {
			// The peer's CPU is not counted: its cluster's workers are
			// processes of their own.
			cells = append(cells, func() { cell(fmt.Sprintf("node%d", c), node.client, 0, c, unfinished) })
		}
		for _, d := range bareReadDrivers {
			// A server per cell: their connections would leave pgbench's
			// too few at 256 clients.
			cells = append(cells, func() {
				key := fmt.Sprintf("bare-%s%d", d, c)
				p, base, err := startBareRead(bareReadConfig{Driver: d, Database: t.url, MaxConns: o.dbMaxConns, Body: string(body)})
				if err != nil {
					logf("  polls rep %d %s: %v", rep+1, key, err)
					return
				}
				defer p.stop()
				lc := newNetHTTPClient(base, 256)
				defer lc.close()
				// Warm: each of its connections opened and prepared.
				if r := runLoad(ctx, lc, c, time.Minute, 20*c+1000, atRandom(unfinished)); r.Errors > 0 {
					logf("  polls rep %d %s: warming: %d errors, first: %s", rep+1, key, r.Errors, r.FirstError)
					return
				}
				cell(key, lc, p.cmd.Process.Pid, c, unfinished)
			})
		}
		runPair(cells, rep)
	}
	if srv.exited() {
		return fmt.Errorf("jobsd serve exited during the poll goals: %s", srv.logTail())
	}
	return nil
}

// runPair runs the two cells of a ratio (or three: two ratios sharing the
// middle cell), in reverse order on odd repeats.
func runPair(pair []func(), rep int) {
	if rep%2 == 1 {
		slices.Reverse(pair)
	}
	for _, f := range pair {
		f()
	}
}

// summarize takes the ratios per repeat and their medians.
func (res *PollGoalsResult) summarize() {
	res.FinishedOverFixed, res.UnfinishedOverComposed, res.ComposedPerSec = map[int]Spread{}, map[int]Spread{}, map[int]Spread{}
	for _, c := range res.FinishedConc {
		api, fixed := res.Runs[fmt.Sprintf("finished%d", c)], res.Runs[fmt.Sprintf("fixed%d", c)]
		var ratios []float64
		for i := range min(len(api), len(fixed)) {
			ratios = append(ratios, api[i].PerSec/fixed[i].PerSec)
		}
		res.FinishedOverFixed[c] = spread(ratios)
	}
	for _, c := range res.UnfinishedConc {
		limits := res.composedLimits(c)
		res.UnfinishedOverComposed[c] = spread(perRepeat(rates(res.Runs[fmt.Sprintf("unfinished%d", c)]), limits))
		res.ComposedPerSec[c] = spread(limits)
	}
	res.summarizeBareReads()
	res.summarizeNodePeer()
}

// composedLimits is each repeat's composed limit at c, 1/(1/pgbench -S +
// 1/fixed reply), over the repeats that measured both.
func (res *PollGoalsResult) composedLimits(c int) []float64 {
	fixed, pgb := res.Runs[fmt.Sprintf("fixed%d", c)], res.Pgbench[c]
	limits := make([]float64, min(len(fixed), len(pgb)))
	for i := range limits {
		limits[i] = 1 / (1/pgb[i].TPS + 1/fixed[i].PerSec)
	}
	return limits
}

// rates is each repeat's requests per second.
func rates(runs []LoadResult) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = r.PerSec
	}
	return out
}

// perRepeat is a[i] ÷ b[i] for each repeat both measured.
func perRepeat(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = a[i] / b[i]
	}
	return out
}

func (res *PollGoalsResult) goals() []Goal {
	var gs []Goal
	for _, c := range res.FinishedConc {
		v := res.FinishedOverFixed[c].Median
		gs = append(gs, Goal{Name: fmt.Sprintf("poll of a finished job (cache) ÷ fixed-reply server, c=%d, net/http", c),
			Target: ">= 0.80x", Measured: v, Met: v >= 0.8})
	}
	for _, c := range res.UnfinishedConc {
		v := res.UnfinishedOverComposed[c].Median
		floor := res.BestBareOverComposed[c]
		gs = append(gs, Goal{Name: fmt.Sprintf("poll of an unfinished job (DB) ÷ 1/(1/pgbench -S + 1/fixed reply), c=%d, net/http", c),
			Target: ">= 0.90x", Measured: v, Met: v >= 0.9, Note: bareFloor("rate ÷ the limit", floor, v >= 0.9 || floor.Median >= 0.9)})
	}
	return append(gs, res.nodePeerGoals()...)
}

func (res *PollGoalsResult) sanitize() {
	ms := []map[int]Spread{res.FinishedOverFixed, res.UnfinishedOverComposed, res.ComposedPerSec, res.BestBareOverComposed}
	for _, d := range bareReadDrivers {
		ms = append(ms, res.BareOverComposed[d], res.UnfinishedOverBare[d])
	}
	for _, m := range ms {
		for k, v := range m {
			m[k] = cleanSpread(v)
		}
	}
	res.sanitizeNodePeer()
}

func (res *PollGoalsResult) print(w io.Writer) {
	fmt.Fprintf(w, "1b. the poll path at its limits: %s jobs, %s users; net/http client; %gs per cell; polls of %d finished (cached) and %d unfinished jobs; pgbench -S at scale %d\n",
		human(res.Jobs), human(res.Users), res.CellSeconds, res.FinishedJobs, res.UnfinishedJobs, res.PgbenchScale)
	fmt.Fprintf(w, "\tc\tfixed reply req/s\tfinished poll req/s\tp50 / p99 ms\tfinished ÷ fixed\tserver CPU µs/req: fixed, finished\tserver sleeps/req: fixed, finished\n")
	med := func(key string) (LoadSummary, bool) {
		rs := res.Runs[key]
		return summarizeRuns(rs), len(rs) > 0
	}
	for _, c := range res.FinishedConc {
		f, _ := med(fmt.Sprintf("fixed%d", c))
		a, _ := med(fmt.Sprintf("finished%d", c))
		fmt.Fprintf(w, "\t%d\t%.0f\t%.0f\t%.2f / %.2f\t%s\t%.1f, %.1f\t%.2f, %.2f\n", c, f.PerSec.Median, a.PerSec.Median, a.P50ms.Median, a.P99ms.Median,
			sp(res.FinishedOverFixed[c], "%.3f"), res.cpu(fmt.Sprintf("fixed%d", c)), res.cpu(fmt.Sprintf("finished%d", c)),
			res.sleeps(fmt.Sprintf("fixed%d", c)), res.sleeps(fmt.Sprintf("finished%d", c)))
	}
	fmt.Fprintf(w, "\tc\tpgbench -S tps (clients)\tfixed reply req/s\tcomposed limit\tunfinished poll req/s\tp50 / p99 ms\tunfinished ÷ limit\tjobsd CPU µs/poll\tPostgreSQL CPU µs: per pgbench tx, per poll\tmachine idle during the polls\n")
	for _, c := range res.UnfinishedConc {
		f, _ := med(fmt.Sprintf("fixed%d", c))
		a, _ := med(fmt.Sprintf("unfinished%d", c))
		var tps []float64
		for _, r := range res.Pgbench[c] {
			tps = append(tps, r.TPS)
		}
		fmt.Fprintf(w, "\t%d\t%.0f (%d)\t%.0f\t%.0f\t%.0f\t%.2f / %.2f\t%s\t%.1f\t%.1f, %.1f\t%.0f%%\n", c, spread(tps).Median, res.PgbenchClients[c], f.PerSec.Median,
			res.ComposedPerSec[c].Median, a.PerSec.Median, a.P50ms.Median, a.P99ms.Median, sp(res.UnfinishedOverComposed[c], "%.3f"),
			res.cpu(fmt.Sprintf("unfinished%d", c)), res.postgresCPU(fmt.Sprintf("pgbench%d", c)), res.postgresCPU(fmt.Sprintf("unfinished%d", c)),
			100*spread(res.MachineIdle[fmt.Sprintf("unfinished%d", c)]).Median)
	}
	res.printBareReads(w, med)
	res.printNodePeer(w)
}

// postgresMeter starts counting PostgreSQL's CPU for a cell that reads the
// database (unfinished<c>, node<c>, pgbench<c>; any other gets a meter that
// records nothing); the function it returns records the CPU per request of
// n requests and says it for the log line.
func (res *PollGoalsResult) postgresMeter(e *env, key string) func(n int) string {
	if !strings.HasPrefix(key, "unfinished") && !strings.HasPrefix(key, "node") && !strings.HasPrefix(key, "pgbench") &&
		!strings.HasPrefix(key, "bare-") {
		return func(int) string { return "" }
	}
	pg0, err := serverCPU(e.postmaster)
	if err != nil {
		return func(int) string { return "" }
	}
	return func(n int) string {
		pg1, err := serverCPU(e.postmaster)
		if err != nil || n <= 0 {
			return ""
		}
		us := (pg1 - pg0) * 1e6 / float64(n)
		res.PostgresCPUPerRequest[key] = append(res.PostgresCPUPerRequest[key], us)
		return fmt.Sprintf(" PostgreSQL CPU %.1fµs/req", us)
	}
}

// postgresCPU is the median over repeats of a cell's PostgreSQL CPU per
// request, µs (NaN when not measured).
func (res *PollGoalsResult) postgresCPU(key string) float64 {
	return spread(res.PostgresCPUPerRequest[key]).Median
}

// cpu is the median over repeats of a cell's server CPU per request, µs.
func (res *PollGoalsResult) cpu(key string) float64 { return spread(res.CPUPerRequest[key]).Median }

// sleeps is the median over repeats of a cell's server sleeps per request.
func (res *PollGoalsResult) sleeps(key string) float64 {
	return spread(res.SleepsPerRequest[key]).Median
}

// processTicks is a process's CPU time (user + system) in clock ticks, 0
// when it cannot be read.
func processTicks(pid int) int64 {
	st, err := procStat(pid)
	if err != nil {
		return 0
	}
	return st.utime + st.stime
}

// voluntarySwitches is the voluntary context switches of every thread of
// a process so far (/proc/pid/task/*/status), 0 when they cannot be read.
func voluntarySwitches(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				k, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += k
			}
		}
	}
	return n
}

// machineTicks is the machine's idle CPU time (idle and iowait) and all its
// CPU time so far, in clock ticks over every CPU (/proc/stat); zeros when
// it cannot be read.
func machineTicks() (idle, all int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal; guest time is counted
	// in user already.
	for i, f := range fields[1:9] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0
		}
		all += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return idle, all
}

// subsets returns up to n finished and n unfinished jobs as polls (no
// token yet), spread over the users.
func (ix *jobIndex) subsets(n int) (finished, unfinished []poll) {
	isFinished := map[[2]int]bool{}
	for _, f := range ix.finished {
		isFinished[f] = true
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, u := range r.Perm(len(ix.users)) {
		for i, id := range ix.idStr[u] {
			p := poll{id: id, want: http.StatusOK, ifNoneMatch: strconv.Itoa(u)} // the user, until withTokens
			if isFinished[[2]int{u, i}] {
				if len(finished) < n {
					finished = append(finished, p)
				}
			} else if len(unfinished) < n {
				unfinished = append(unfinished, p)
			}
		}
	}
	return finished, unfinished
}

// withTokens gives each poll its user's token (the user's index was kept in
// ifNoneMatch by subsets).
func withTokens(ps []poll, tokens []string) []poll {
	out := make([]poll, len(ps))
	for i, p := range ps {
		u, _ := strconv.Atoi(p.ifNoneMatch)
		out[i] = poll{id: p.id, token: tokens[u], want: p.want}
	}
	return out
}

func inOrder(ps []poll) func(*mrand.Rand, int) poll {
	return func(_ *mrand.Rand, seq int) poll { return ps[seq%len(ps)] }
}

func atRandom(ps []poll) func(*mrand.Rand, int) poll {
	return func(r *mrand.Rand, _ int) poll { return ps[r.IntN(len(ps))] }
}

// pollBody is the body jobsd answers for p: the fixed-reply server sends
// the same bytes.
func pollBody(base string, p poll) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/api/jobs/"+p.id, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("poll for the fixed reply's body: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("poll for the fixed reply's body: HTTP %d", resp.StatusCode)
	}
	return b, err
}

var (
	pgbenchTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	pgbenchLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// runPgbench runs `pgbench -S` (prepared, select-only) for dur at c clients
// (at most maxPgbenchClients), with one thread per CPU at most.
func runPgbench(ctx context.Context, url string, c int, dur time.Duration) (PgbenchRun, error) {
	clients := min(c, maxPgbenchClients)
	threads := min(clients, e2cpus())
	secs := max(1, int(math.Round(dur.Seconds())))
	out, err := exec.CommandContext(ctx, "pgbench", "-n", "-S", "-M", "prepared", "-c", strconv.Itoa(clients),
		"-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs), url).CombinedOutput()
	if err != nil {
		return PgbenchRun{}, fmt.Errorf("pgbench -S: %w: %s", err, lastLines(string(out), 3))
	}
	r := PgbenchRun{Clients: clients}
	if m := pgbenchTPS.FindStringSubmatch(string(out)); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := pgbenchLatency.FindStringSubmatch(string(out)); m != nil {
		r.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if r.TPS == 0 {
		return r, fmt.Errorf("pgbench -S: no tps in its output: %s", lastLines(string(out), 5))
	}
	return r, nil
}

func e2cpus() int { return max(1, machineInfo().NProc) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// fixedReplyEnv, when set, makes this program the fixed-reply server: the
// bench starts itself again with it, so that the server is a process of its
// own, as jobsd is, and not a part of the load generator's process.
const fixedReplyEnv = "JOBSD_BENCH_FIXED_REPLY"

// selfProc is a server this program runs as a process of its own (the
// fixed reply, the bare reads).
type selfProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// startFixedReply starts the fixed-reply server answering body (as
// application/json) to every request, and returns its base URL.
func startFixedReply(body []byte) (*selfProc, string, error) {
	return startSelf("the fixed-reply server", fixedReplyEnv+"="+string(body))
}

// startSelf starts this program again with env added, as the server that
// env names (what), and returns the address it prints as a base URL.
func startSelf(what, env string) (*selfProc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", what, err)
	}
	p := &selfProc{cmd: cmd, stdin: stdin}
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, "", fmt.Errorf("%s's address: %w", what, err)
	}
	return p, "http://" + strings.TrimSpace(addr), nil
}

// stop closes the server's stdin, on which it exits, and waits for it.
func (p *selfProc) stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// serveFixedReply is the fixed-reply server's main: it listens on a free
// loopback port, prints the address, answers the body to every request and
// exits when its stdin closes (when the bench stops it or dies).
func serveFixedReply(body string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixed-reply server:", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	b := []byte(body)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	fmt.Fprintln(os.Stderr, "fixed-reply server:", err)
	return 1
}
