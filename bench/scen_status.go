package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"time"
)

// LoadSummary is one load shape over the repeats.
type LoadSummary struct {
	Concurrency int    `json:"concurrency"`
	PerSec      Spread `json:"perSec"`
	P50ms       Spread `json:"p50ms"`
	P99ms       Spread `json:"p99ms"`
	P999ms      Spread `json:"p999ms"`
	Requests    int    `json:"requests"`
	Errors      int    `json:"errors"`
}

func summarizeRuns(rs []LoadResult) LoadSummary {
	var s LoadSummary
	var a, b, c, d []float64
	for _, r := range rs {
		s.Concurrency = r.Concurrency
		a, b, c, d = append(a, r.PerSec), append(b, r.P50ms), append(c, r.P99ms), append(d, r.P999ms)
		s.Requests += r.Requests
		s.Errors += r.Errors
	}
	s.PerSec, s.P50ms, s.P99ms, s.P999ms = spread(a), spread(b), spread(c), spread(d)
	return s
}

// StatusResult is scenario 1 (and, with another table, scenario 4).
type StatusResult struct {
	Jobs         int                     `json:"jobs"`
	Users        int                     `json:"users"`
	Sizes        TableSizes              `json:"tableSizes"`
	APIDBConns   int                     `json:"apiDbMaxConns"`
	Cold         LoadSummary             `json:"coldTokenPass"`
	Warm         []LoadSummary           `json:"warm"`
	WarmNetHTTP  LoadSummary             `json:"warmNetHTTP64"`
	Warm304      LoadSummary             `json:"warm304At64"`
	WarmFinished LoadSummary             `json:"warmFinishedAt64"`
	Raw          []LoadSummary           `json:"rawDb"`
	RawPoolSize  map[int]int             `json:"rawDbPoolSize"`
	RatioAt64    Spread                  `json:"apiOverRawAt64"`
	Runs         map[string][]LoadResult `json:"runs"`

	target statusTarget // the seeded table, for scenario 4
}

// statusTarget is a seeded jobs table: its database and its jobs by user.
type statusTarget struct {
	url string
	ix  *jobIndex
}

type statusOpts struct {
	db          string
	jobs, users int
	conc        []int
	dur         time.Duration
	repeats     int
	raw         bool // also measure raw DB reads
	dbMaxConns  int
}

func runStatusScenario(ctx context.Context, e *env, iss *tokenIssuer, o statusOpts) (*StatusResult, error) {
	target, sizes, err := seedTarget(ctx, e, o)
	if err != nil {
		return nil, err
	}
	url, ix := target.url, target.ix
	res := &StatusResult{Jobs: ix.numJobs, Users: o.users, Sizes: sizes, APIDBConns: o.dbMaxConns, RawPoolSize: map[int]int{},
		Runs: map[string][]LoadResult{}, target: target}

	var ratios []float64
	for rep := range o.repeats {
		// A fresh server per repeat: empty token cache, first JWKS fetch, new pool.
		// Rate limits off: the run measures the read path, not the limiter.
		srv, base, err := e.startServe(ctx, fmt.Sprintf("serve-%s-%d", o.db, rep), url, iss.srv.URL, o.dbMaxConns, "JOBS_RATE_READ=0")
		if err != nil {
			return nil, err
		}
		lean := newLeanClient(base, 0)
		tokens, err := iss.mint(ix.users)
		if err != nil {
			srv.stop()
			return nil, err
		}
		// Cold pass: one request per user with its never-seen token, at 64.
		cold := runLoad(ctx, lean, 64, 2*time.Minute, len(tokens), ix.onePerUser(tokens))
		res.Runs["cold64"] = append(res.Runs["cold64"], cold)
		logf("  %s rep %d cold tokens c=64: %.0f req/s p99 %.2fms errors %d", o.db, rep+1, cold.PerSec, cold.P99ms, cold.Errors)
		// Each API pass is followed at once by the raw-DB pass at the same
		// concurrency, so that the pair sees the same machine noise.
		var api64, raw64 float64
		for _, c := range o.conc {
			warm := runLoad(ctx, lean, c, o.dur, 0, ix.anyJob(tokens))
			key := fmt.Sprintf("warm%d", c)
			res.Runs[key] = append(res.Runs[key], warm)
			logf("  %s rep %d warm c=%d: %.0f req/s p50 %.2fms p99 %.2fms p99.9 %.2fms errors %d %s", o.db, rep+1, c,
				warm.PerSec, warm.P50ms, warm.P99ms, warm.P999ms, warm.Errors, warm.FirstError)
			if c == 64 {
				api64 = warm.PerSec
			}
			if !o.raw {
				continue
			}
			raw, poolSize, err := runRawReads(ctx, url, ix, c, o.dur)
			if err != nil {
				srv.stop()
				return nil, err
			}
			res.RawPoolSize[c] = poolSize
			key = fmt.Sprintf("raw%d", c)
			res.Runs[key] = append(res.Runs[key], raw)
			logf("  %s rep %d raw pgx c=%d: %.0f reads/s p50 %.2fms p99 %.2fms errors %d", o.db, rep+1, c,
				raw.PerSec, raw.P50ms, raw.P99ms, raw.Errors)
			if c == 64 {
				raw64 = raw.PerSec
			}
		}
		// Two more shapes at 64 on the same server: conditional polls that
		// get 304s, and polls of finished jobs only.
		for _, v := range []struct {
			key, what string
			pick      func(*mrand.Rand, int) poll
		}{
			{"warm304_64", "304 (If-None-Match)", ix.notModified(tokens)},
			{"warmFinished64", "finished jobs only", ix.finishedJob(tokens)},
		} {
			r := runLoad(ctx, lean, 64, o.dur, 0, v.pick)
			res.Runs[v.key] = append(res.Runs[v.key], r)
			logf("  %s rep %d warm c=64, %s: %.0f req/s p50 %.2fms p99 %.2fms errors %d %s", o.db, rep+1, v.what,
				r.PerSec, r.P50ms, r.P99ms, r.Errors, r.FirstError)
		}
		srv.stop()
		if o.raw {
			if raw64 > 0 {
				ratios = append(ratios, api64/raw64)
			}
		}
		// The warm pass at 64 once more, polled through net/http's client
		// as the generated Go client polls, on a fresh server warmed the
		// same way: what that client costs the machine.
		viaNetHTTP, err := warmPass(ctx, e, iss, target, 64, o, fmt.Sprintf("serve-%s-%d-nethttp", o.db, rep), newNetHTTPClient)
		if err != nil {
			return nil, err
		}
		res.Runs["warmNetHTTP64"] = append(res.Runs["warmNetHTTP64"], viaNetHTTP)
		logf("  %s rep %d warm c=64, net/http client: %.0f req/s p50 %.2fms p99 %.2fms errors %d %s", o.db, rep+1,
			viaNetHTTP.PerSec, viaNetHTTP.P50ms, viaNetHTTP.P99ms, viaNetHTTP.Errors, viaNetHTTP.FirstError)
	}
	res.Cold = summarizeRuns(res.Runs["cold64"])
	for _, c := range o.conc {
		res.Warm = append(res.Warm, summarizeRuns(res.Runs[fmt.Sprintf("warm%d", c)]))
		if o.raw {
			res.Raw = append(res.Raw, summarizeRuns(res.Runs[fmt.Sprintf("raw%d", c)]))
		}
	}
	res.WarmNetHTTP = summarizeRuns(res.Runs["warmNetHTTP64"])
	res.Warm304 = summarizeRuns(res.Runs["warm304_64"])
	res.WarmFinished = summarizeRuns(res.Runs["warmFinished64"])
	res.RatioAt64 = spread(ratios)
	return res, nil
}

func (r *StatusResult) warmAt(c int) (LoadSummary, bool) {
	for _, w := range r.Warm {
		if w.Concurrency == c {
			return w, true
		}
	}
	return LoadSummary{}, false
}

// GrowthResult is scenario 4: the warm status poll at c=64 on a small table
// and on the scenario-1 table, measured back to back in each repeat (in
// alternating order), so that each ratio pairs passes a few seconds apart.
type GrowthResult struct {
	SmallJobs       int          `json:"smallJobs"`
	SmallSizes      TableSizes   `json:"smallTableSizes"`
	BigJobs         int          `json:"bigJobs"`
	BigSizes        TableSizes   `json:"bigTableSizes"`
	Small           LoadSummary  `json:"small"`
	Big             LoadSummary  `json:"big"`
	Runs            []LoadResult `json:"runs"` // small, big per repeat
	P99BigOverSmall Spread       `json:"p99BigOverSmall"`
	RPSBigOverSmall Spread       `json:"reqPerSecBigOverSmall"`
}

func runGrowthScenario(ctx context.Context, e *env, iss *tokenIssuer, big *StatusResult, o statusOpts) (*GrowthResult, error) {
	small, sizes, err := seedTarget(ctx, e, o)
	if err != nil {
		return nil, err
	}
	g := &GrowthResult{SmallJobs: small.ix.numJobs, SmallSizes: sizes, BigJobs: big.Jobs, BigSizes: big.Sizes}
	var p99s, rates []float64
	var smallRuns, bigRuns []LoadResult
	for rep := range o.repeats {
		order := []statusTarget{small, big.target}
		if rep%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		var got [2]LoadResult
		for _, t := range order {
			r, err := warmPass(ctx, e, iss, t, 64, o, fmt.Sprintf("serve-growth-%d-%d", rep, t.ix.numJobs), newLeanClient)
			if err != nil {
				return nil, err
			}
			i := 0
			if t.url != small.url {
				i = 1
			}
			got[i] = r
			logf("  growth rep %d %d jobs warm c=64: %.0f req/s p99 %.2fms errors %d", rep+1, t.ix.numJobs, r.PerSec, r.P99ms, r.Errors)
		}
		g.Runs = append(g.Runs, got[0], got[1])
		smallRuns, bigRuns = append(smallRuns, got[0]), append(bigRuns, got[1])
		p99s = append(p99s, got[1].P99ms/got[0].P99ms)
		rates = append(rates, got[1].PerSec/got[0].PerSec)
	}
	g.Small, g.Big = summarizeRuns(smallRuns), summarizeRuns(bigRuns)
	g.P99BigOverSmall, g.RPSBigOverSmall = spread(p99s), spread(rates)
	return g, nil
}

// seedTarget creates o.db and seeds it with o.jobs jobs over o.users users.
func seedTarget(ctx context.Context, e *env, o statusOpts) (statusTarget, TableSizes, error) {
	url, pool, err := e.createJobsDB(ctx, o.db)
	if err != nil {
		return statusTarget{}, TableSizes{}, err
	}
	defer pool.Close()
	t0 := time.Now()
	if err := seedStatusJobs(ctx, pool, o.jobs, o.users); err != nil {
		return statusTarget{}, TableSizes{}, err
	}
	ix, err := loadJobIndex(ctx, pool, o.users)
	if err != nil {
		return statusTarget{}, TableSizes{}, err
	}
	sizes, err := jobsTableSizes(ctx, pool)
	if err != nil {
		return statusTarget{}, TableSizes{}, err
	}
	logf("  %s: seeded %d jobs over %d users in %.1fs (heap %s, indexes %s)", o.db, ix.numJobs, o.users,
		time.Since(t0).Seconds(), mib(sizes.HeapBytes), mib(sizes.IndexesBytes))
	return statusTarget{url: url, ix: ix}, sizes, nil
}

// warmPass starts a fresh server on t's database, warms its token cache
// with one request per user, then measures the warm poll at conc, through
// the client that mk makes for the server's base URL.
func warmPass(ctx context.Context, e *env, iss *tokenIssuer, t statusTarget, conc int, o statusOpts, name string,
	mk func(base string, conc int) loadClient) (LoadResult, error) {
	srv, base, err := e.startServe(ctx, name, t.url, iss.srv.URL, o.dbMaxConns, "JOBS_RATE_READ=0")
	if err != nil {
		return LoadResult{}, err
	}
	defer srv.stop()
	lc := mk(base, conc)
	defer lc.close()
	tokens, err := iss.mint(t.ix.users)
	if err != nil {
		return LoadResult{}, err
	}
	runLoad(ctx, lc, 64, 2*time.Minute, len(tokens), t.ix.onePerUser(tokens))
	return runLoad(ctx, lc, conc, o.dur, 0, t.ix.anyJob(tokens)), nil
}

// onePerUser polls one random job of user seq: the cold-token pass.
func (ix *jobIndex) onePerUser(tokens []string) func(*mrand.Rand, int) poll {
	return func(r *mrand.Rand, u int) poll {
		return poll{token: tokens[u], id: ix.idStr[u][r.IntN(len(ix.idStr[u]))], want: http.StatusOK}
	}
}

// anyJob polls a random user's random job.
func (ix *jobIndex) anyJob(tokens []string) func(*mrand.Rand, int) poll {
	return func(r *mrand.Rand, _ int) poll {
		u := r.IntN(len(tokens))
		return poll{token: tokens[u], id: ix.idStr[u][r.IntN(len(ix.idStr[u]))], want: http.StatusOK}
	}
}

// notModified polls a random job with its current ETag: a 304.
func (ix *jobIndex) notModified(tokens []string) func(*mrand.Rand, int) poll {
	return func(r *mrand.Rand, _ int) poll {
		u := r.IntN(len(tokens))
		i := r.IntN(len(ix.idStr[u]))
		return poll{token: tokens[u], id: ix.idStr[u][i], ifNoneMatch: ix.etags[u][i], want: http.StatusNotModified}
	}
}

// finishedJob polls a random COMPLETED or FAILED job.
func (ix *jobIndex) finishedJob(tokens []string) func(*mrand.Rand, int) poll {
	return func(r *mrand.Rand, _ int) poll {
		f := ix.finished[r.IntN(len(ix.finished))]
		return poll{token: tokens[f[0]], id: ix.idStr[f[0]][f[1]], want: http.StatusOK}
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
