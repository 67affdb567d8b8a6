package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobsd/jobsd/auth"
)

// getJobSQL is the API's status-poll query (store.getJobSQL, unexported there).
const getJobSQL = `SELECT id, user_id, type, status, result, error, attempts, max_attempts,
	created_at, started_at, completed_at, updated_at, version FROM jobs WHERE id = $1 AND user_id = $2`

// seedStatusJobs fills jobs with n rows over users users: a mix of
// COMPLETED (50%), FAILED (12.5%), PROCESSING (12.5%) and PENDING (25%).
func seedStatusJobs(ctx context.Context, pool *pgxpool.Pool, n, users int) error {
	const batch = 250_000
	for lo := 1; lo <= n; lo += batch {
		hi := min(lo+batch-1, n)
		_, err := pool.Exec(ctx, `
		INSERT INTO jobs (id, user_id, type, status, input, result, error, attempts,
			created_at, started_at, completed_at, updated_at, run_after, lease_owner, lease_expires_at)
		SELECT gen_random_uuid(), 'user-' || (g % $3), 'AI_PREVIEW', s.status,
			'{"prompt":"Summarise the market risks for maize farmers"}',
			CASE WHEN s.status = 'COMPLETED' THEN '{"output":"Local preview (extractive; no AI model was called): Summarise the market risks for maize farmers"}'::jsonb END,
			CASE WHEN s.status = 'FAILED' THEN 'Bedrock API error: ThrottlingException - Rate exceeded' END,
			CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END,
			now() - make_interval(secs => g % 86400),
			CASE WHEN s.status <> 'PENDING' THEN now() - make_interval(secs => g % 86400) END,
			CASE WHEN s.status IN ('COMPLETED', 'FAILED') THEN now() END,
			now(),
			now() + interval '1 day',
			CASE WHEN s.status = 'PROCESSING' THEN gen_random_uuid() END,
			CASE WHEN s.status = 'PROCESSING' THEN now() + interval '1 day' END
		FROM generate_series($1::int, $2::int) g,
			LATERAL (SELECT CASE g % 8 WHEN 0 THEN 'FAILED' WHEN 1 THEN 'PROCESSING'
				WHEN 2 THEN 'PENDING' WHEN 3 THEN 'PENDING' ELSE 'COMPLETED' END AS status) s`,
			lo, hi, users)
		if err != nil {
			return fmt.Errorf("seed jobs: %w", err)
		}
	}
	_, err := pool.Exec(ctx, "VACUUM ANALYZE jobs")
	return err
}

// jobIndex is every seeded job by user.
type jobIndex struct {
	users   []string
	ids     [][]uuid.UUID
	idStr   [][]string
	etags   [][]string // the ETag the API gives each job: its version
	numJobs int
	// finished lists the COMPLETED and FAILED jobs as [user, index] pairs.
	finished [][2]int
}

func loadJobIndex(ctx context.Context, pool *pgxpool.Pool, users int) (*jobIndex, error) {
	return loadJobIndexOf(ctx, pool, "user-", users)
}

// loadJobIndexOf indexes the jobs of users prefix0 .. prefix<users-1>
// (prefix is 5 bytes long, as "user-").
func loadJobIndexOf(ctx context.Context, pool *pgxpool.Pool, prefix string, users int) (*jobIndex, error) {
	ix := &jobIndex{users: make([]string, users), ids: make([][]uuid.UUID, users), idStr: make([][]string, users),
		etags: make([][]string, users)}
	for i := range users {
		ix.users[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	rows, err := pool.Query(ctx, `SELECT id, substr(user_id, 6)::int, version, status IN ('COMPLETED', 'FAILED') FROM jobs
		WHERE starts_with(user_id, $1)`, prefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var u int
		var version int64
		var finished bool
		if err := rows.Scan(&id, &u, &version, &finished); err != nil {
			return nil, err
		}
		if finished {
			ix.finished = append(ix.finished, [2]int{u, len(ix.ids[u])})
		}
		ix.ids[u] = append(ix.ids[u], id)
		ix.idStr[u] = append(ix.idStr[u], id.String())
		ix.etags[u] = append(ix.etags[u], fmt.Sprintf(`"v%d"`, version))
		ix.numJobs++
	}
	return ix, rows.Err()
}

// tokenIssuer is a local issuer whose JWKS the bench process serves.
type tokenIssuer struct {
	srv *httptest.Server
	iss *auth.Issuer
}

func newTokenIssuer() (*tokenIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	t := &tokenIssuer{}
	mux := http.NewServeMux()
	t.srv = httptest.NewServer(mux)
	t.iss = auth.NewIssuer(key, t.srv.URL)
	mux.Handle(auth.JWKSPath, t.iss.JWKSHandler())
	return t, nil
}

// mint signs one fresh token per user, on all cores.
func (t *tokenIssuer) mint(users []string) ([]string, error) {
	out := make([]string, len(users))
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(users) {
					return
				}
				tok, err := t.iss.Mint(users[i], "bench", nil, 2*time.Hour)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				out[i] = tok
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// LoadResult is one timed pass of the load generator.
type LoadResult struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"perSec"`
	P50ms       float64 `json:"p50ms"`
	P99ms       float64 `json:"p99ms"`
	P999ms      float64 `json:"p999ms"`
	FirstError  string  `json:"firstError,omitempty"`
}

// A poll is what one request of a load pass asks: the job, its owner's
// token, the If-None-Match to send (none when empty) and the status expected.
type poll struct {
	token, id, ifNoneMatch string
	want                   int
}

// runLoad runs conc workers, each with its own poller from lc, until dur
// passes (or, with total > 0, until total requests were taken); each request
// is pick(worker rng, seq). A poll that does not get its expected status is
// an error.
func runLoad(ctx context.Context, lc loadClient, conc int, dur time.Duration, total int,
	pick func(r *mrand.Rand, seq int) poll) LoadResult {
	lat := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var firstErr atomic.Value
	var seq atomic.Int64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			p := lc.newPoller()
			defer p.close()
			r := mrand.New(mrand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
			path := make([]byte, 0, 64)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				s := int(seq.Add(1)) - 1
				if total > 0 && s >= total {
					return
				}
				q := pick(r, s)
				path = append(append(path[:0], "/api/jobs/"...), q.id...)
				t0 := time.Now()
				status, err := p.get(string(path), q.token, q.ifNoneMatch)
				lat[w] = append(lat[w], time.Since(t0))
				if err != nil || status != q.want {
					errs[w]++
					if firstErr.Load() == nil {
						if err != nil {
							firstErr.Store(err.Error())
						} else {
							firstErr.Store(fmt.Sprintf("HTTP %d", status))
						}
					}
				}
			}
		})
	}
	wg.Wait()
	return summarizeLoad(conc, time.Since(start), lat, errs, firstErr)
}

func summarizeLoad(conc int, elapsed time.Duration, lat [][]time.Duration, errs []int, firstErr atomic.Value) LoadResult {
	var all []time.Duration
	res := LoadResult{Concurrency: conc, Seconds: elapsed.Seconds()}
	for w := range lat {
		all = append(all, lat[w]...)
		res.Errors += errs[w]
	}
	sortDurations(all)
	res.Requests = len(all)
	res.PerSec = float64(len(all)) / elapsed.Seconds()
	res.P50ms, res.P99ms, res.P999ms = ms(pct(all, 50)), ms(pct(all, 99)), ms(pct(all, 99.9))
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	return res
}

// runRawReads is the database limit: the API's query, prepared (pgx's
// statement cache), from conc goroutines over a pool of min(conc, 150)
// connections (the server allows 200).
func runRawReads(ctx context.Context, dbURL string, ix *jobIndex, conc int, dur time.Duration) (LoadResult, int, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return LoadResult{}, 0, err
	}
	poolSize := min(conc, 150)
	cfg.MaxConns = int32(poolSize)
	cfg.MinConns = int32(poolSize)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return LoadResult{}, 0, err
	}
	defer pool.Close()
	// open and prepare on every connection before timing
	var wg sync.WaitGroup
	for range poolSize {
		wg.Go(func() {
			var s string
			_ = pool.QueryRow(ctx, getJobSQL, ix.ids[0][0], ix.users[0]).Scan(new(uuid.UUID), &s, &s, &s, new([]byte), new([]byte), new(*string), new(int), new(int), new(time.Time), new(*time.Time), new(*time.Time), new(time.Time), new(int64))
		})
	}
	wg.Wait()

	lat := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var firstErr atomic.Value
	deadline := time.Now().Add(dur)
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(w)+7, uint64(time.Now().UnixNano())))
			var (
				id                    uuid.UUID
				uid, typ, status      string
				result                []byte
				errText               *string
				attempts, maxAttempts int
				created, updated      time.Time
				started, completed    *time.Time
				version               int64
			)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				u := r.IntN(len(ix.users))
				j := ix.ids[u][r.IntN(len(ix.ids[u]))]
				t0 := time.Now()
				err := pool.QueryRow(ctx, getJobSQL, j, ix.users[u]).Scan(&id, &uid, &typ, &status, &result,
					&errText, &attempts, &maxAttempts, &created, &started, &completed, &updated, &version)
				lat[w] = append(lat[w], time.Since(t0))
				if err != nil {
					errs[w]++
					if firstErr.Load() == nil {
						firstErr.Store(err.Error())
					}
				}
			}
		})
	}
	wg.Wait()
	return summarizeLoad(conc, time.Since(start), lat, errs, firstErr), poolSize, nil
}

// tableSizes reports the jobs table's heap and index sizes.
type TableSizes struct {
	Rows         int64 `json:"rows"`
	HeapBytes    int64 `json:"heapBytes"`
	IndexesBytes int64 `json:"indexesBytes"`
	TotalBytes   int64 `json:"totalBytes"`
}

func jobsTableSizes(ctx context.Context, pool *pgxpool.Pool) (TableSizes, error) {
	var s TableSizes
	err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM jobs), pg_relation_size('jobs'),
		pg_indexes_size('jobs'), pg_total_relation_size('jobs')`).Scan(&s.Rows, &s.HeapBytes, &s.IndexesBytes, &s.TotalBytes)
	return s, err
}
