package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lib/pq"
)

// The bare-read servers are the floor of the unfinished-job poll's design on
// this machine: the least a Go net/http server can do to answer a poll with
// one read of PostgreSQL. Each answers GET /api/jobs/{id} by reading that
// job's row (the columns jobsd reads, by primary key, a prepared statement
// on a pool as large as jobsd's) and sending the fixed reply's bytes: no
// token, no owner check, no middleware, no encoding. One uses pgx (the
// lightest Go client), one database/sql with lib/pq (jobsd's driver). Their
// rates beside the composed limit say how much of the limit any server that
// reads per poll reaches here; jobsd's rate beside theirs says what jobsd's
// own work costs.

// bareReadEnv, when set, makes this program a bare-read server: its value is
// the server's settings as JSON (bareReadConfig).
const bareReadEnv = "JOBSD_BENCH_BARE_READ"

// bareReadDrivers are the bare-read servers' drivers, in the order measured.
var bareReadDrivers = []string{"pgx", "pq"}

type bareReadConfig struct {
	Driver   string `json:"driver"` // pgx or pq
	Database string `json:"database"`
	MaxConns int    `json:"maxConns"`
	Body     string `json:"body"`
}

// bareReadSQL is the statement of jobsd's lone status read (store/jobs.go's
// jobColumns).
const bareReadSQL = `SELECT id, user_id, type, status, result, error, attempts, max_attempts,
	created_at, started_at, completed_at, updated_at, version FROM jobs WHERE id = $1`

// startBareRead starts a bare-read server and returns its base URL.
func startBareRead(cfg bareReadConfig) (*selfProc, string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	return startSelf("the "+cfg.Driver+" bare-read server", bareReadEnv+"="+string(b))
}

// errNoRow is a bare read that found no job.
var errNoRow = errors.New("no such job")

// serveBareRead is a bare-read server's main, as serveFixedReply's.
func serveBareRead(settings string) int {
	var cfg bareReadConfig
	if err := json.Unmarshal([]byte(settings), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bare-read server:", err)
		return 1
	}
	read, closeDB, err := openBareRead(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare-read server:", err)
		return 1
	}
	defer closeDB()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare-read server:", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	body := []byte(cfg.Body)
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
		if err != nil {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		// No context that can be cancelled: with one, database/sql and
		// lib/pq start a goroutine per query to watch it (jobsd bounds its
		// reads at the socket instead: store/pollconn.go).
		switch err := read(context.Background(), id); {
		case errors.Is(err, errNoRow):
			http.Error(w, "not found", http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
	}))
	fmt.Fprintln(os.Stderr, "bare-read server:", err)
	return 1
}

// openBareRead opens cfg's pool and returns its read of one job's row.
func openBareRead(cfg bareReadConfig) (read func(context.Context, uuid.UUID) error, closeDB func(), err error) {
	switch cfg.Driver {
	case "pgx":
		pc, err := pgxpool.ParseConfig(cfg.Database)
		if err != nil {
			return nil, nil, err
		}
		pc.MaxConns = int32(cfg.MaxConns)
		pool, err := pgxpool.NewWithConfig(context.Background(), pc)
		if err != nil {
			return nil, nil, err
		}
		// pgx prepares and caches the statement per connection.
		return func(ctx context.Context, id uuid.UUID) error {
			rows, err := pool.Query(ctx, bareReadSQL, id)
			if err != nil {
				return err
			}
			defer rows.Close()
			if !rows.Next() {
				return cmp.Or(rows.Err(), errNoRow)
			}
			_ = rows.RawValues()
			rows.Close()
			return rows.Err()
		}, pool.Close, nil
	case "pq":
		conn, err := pq.NewConnector(cfg.Database)
		if err != nil {
			return nil, nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(cfg.MaxConns)
		db.SetMaxIdleConns(cfg.MaxConns)
		stmt, err := db.Prepare(bareReadSQL)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return func(ctx context.Context, id uuid.UUID) error {
			rows, err := stmt.QueryContext(ctx, id.String())
			if err != nil {
				return err
			}
			defer rows.Close()
			if !rows.Next() {
				return cmp.Or(rows.Err(), errNoRow)
			}
			var cols [13]sql.RawBytes
			dest := make([]any, len(cols))
			for i := range cols {
				dest[i] = &cols[i]
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			return rows.Close()
		}, func() { stmt.Close(); db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown driver %q", cfg.Driver)
}

// summarizeBareReads takes the bare-read servers' ratios per repeat and
// their medians.
func (res *PollGoalsResult) summarizeBareReads() {
	res.BareOverComposed, res.UnfinishedOverBare = map[string]map[int]Spread{}, map[string]map[int]Spread{}
	res.BestBareOverComposed = map[int]Spread{}
	for _, c := range res.UnfinishedConc {
		best, _ := res.bestBare(c)
		res.BestBareOverComposed[c] = spread(perRepeat(best, res.composedLimits(c)))
	}
	for _, d := range bareReadDrivers {
		res.BareOverComposed[d], res.UnfinishedOverBare[d] = map[int]Spread{}, map[int]Spread{}
		for _, c := range res.UnfinishedConc {
			bare, api := rates(res.Runs[fmt.Sprintf("bare-%s%d", d, c)]), rates(res.Runs[fmt.Sprintf("unfinished%d", c)])
			res.BareOverComposed[d][c] = spread(perRepeat(bare, res.composedLimits(c)))
			res.UnfinishedOverBare[d][c] = spread(perRepeat(api, bare))
		}
	}
}

// printBareReads prints the bare-read servers' cells beside jobsd's
// unfinished poll.
func (res *PollGoalsResult) printBareReads(w io.Writer, med func(string) (LoadSummary, bool)) {
	fmt.Fprintf(w, "\tthe floor: a bare net/http server reading the job's row per poll, no token, no middleware (barereads.go)\n")
	fmt.Fprintf(w, "\tc\tdriver\tbare read req/s\tp50 / p99 ms\tbare ÷ composed limit\tjobsd unfinished ÷ bare\tserver CPU µs/req: bare, jobsd\tserver sleeps/req: bare, jobsd\tPostgreSQL CPU µs/req: bare, jobsd\n")
	for _, c := range res.UnfinishedConc {
		for _, d := range bareReadDrivers {
			key := fmt.Sprintf("bare-%s%d", d, c)
			b, ok := med(key)
			if !ok {
				continue
			}
			jobsd := fmt.Sprintf("unfinished%d", c)
			fmt.Fprintf(w, "\t%d\t%s\t%.0f\t%.2f / %.2f\t%s\t%s\t%.1f, %.1f\t%.2f, %.2f\t%.1f, %.1f\n", c, d, b.PerSec.Median, b.P50ms.Median, b.P99ms.Median,
				sp(res.BareOverComposed[d][c], "%.3f"), sp(res.UnfinishedOverBare[d][c], "%.3f"), res.cpu(key), res.cpu(jobsd), res.sleeps(key), res.sleeps(jobsd),
				res.postgresCPU(key), res.postgresCPU(jobsd))
		}
	}
}

// bestBare is, per repeat at c, the faster bare-read server's rate and the
// lower of their p99s: the floor of a read per poll that the goals' notes
// cite.
func (res *PollGoalsResult) bestBare(c int) (perSec, p99ms []float64) {
	for _, d := range bareReadDrivers {
		for i, r := range res.Runs[fmt.Sprintf("bare-%s%d", d, c)] {
			if i == len(perSec) {
				perSec, p99ms = append(perSec, r.PerSec), append(p99ms, r.P99ms)
				continue
			}
			perSec[i], p99ms[i] = max(perSec[i], r.PerSec), min(p99ms[i], r.P99ms)
		}
	}
	return perSec, p99ms
}

// bareFloor is a note for a goal that even the faster bare-read server
// misses: its own figure, the floor of any server that reads PostgreSQL
// once per poll in this harness. Empty when it meets the goal or was not
// measured.
func bareFloor(what string, floor Spread, met bool) string {
	if len(floor.Values) == 0 || floor.Median != floor.Median || met {
		return ""
	}
	return fmt.Sprintf("a bare read server's own %s: %.3f (the floor of a read per poll here)", what, floor.Median)
}
