package store_test

import (
	"context"
	"database/sql"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// BenchmarkQueryDeadline is what bounding a prepared round trip through
// database/sql and lib/pq costs, three ways:
//   - bg: context.Background(), unbounded (the floor);
//   - deadline: a context with a deadline, as status reads had: with a
//     Done channel, database/sql (Rows.awaitDone) and lib/pq (watchCancel)
//     each start a goroutine per query;
//   - socket: context.Background() on the status reads' pool
//     (store.OpenPollDB), whose connections' socket deadline is the bound,
//     as status reads have now.
//
// Each reports the wall time and the process's CPU time (getrusage) per
// query: on a busy machine the wall time is mostly waiting for a core, the
// CPU time is what the way itself costs, the goroutines it starts included.
// Run with -count to interleave the three.
func BenchmarkQueryDeadline(b *testing.B) {
	_, url := pgtest.NewStore(b)
	db := sqlx.MustOpen("postgres", url)
	defer db.Close()
	db.SetMaxOpenConns(2)
	polls, err := store.OpenPollDB(url, 5*time.Second, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer polls.Close()
	for _, v := range []struct {
		name string
		db   *sql.DB
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"bg", db.DB, background},
		{"deadline", db.DB, func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
		}},
		{"socket", polls, background},
	} {
		b.Run(v.name, func(b *testing.B) {
			stmt, err := v.db.Prepare("SELECT 1 WHERE $1::int = 1")
			if err != nil {
				b.Fatal(err)
			}
			defer stmt.Close()
			cpu0 := processCPU(b)
			for b.Loop() {
				ctx, cancel := v.ctx()
				queryOne(b, ctx, stmt)
				cancel()
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
		})
	}
}

func background() (context.Context, context.CancelFunc) { return context.Background(), func() {} }

func queryOne(b *testing.B, ctx context.Context, stmt *sql.Stmt) {
	rows, err := stmt.QueryContext(ctx, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReadAfterIdle times a status read (Get on the store's status
// reads' pool) right after the previous one, after 90 µs of this process
// spinning, and after it slept (90 µs asked; the machine's timers may give
// more): what the same read costs when PostgreSQL's backend (and this
// process) went idle between reads, as they do between the polls of one
// client, where each read comes after an HTTP round trip (bench/README.md,
// "Fourth round": at one client, the read inside a poll took 150 µs where
// back-to-back reads took 100).
func BenchmarkReadAfterIdle(b *testing.B) {
	st, _ := pgtest.NewStore(b)
	ctx := context.Background()
	j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		b.Fatal(err)
	}
	gaps := []struct {
		name string
		wait func()
	}{
		{"back-to-back", func() {}},
		{"after-90µs-spinning", func() {
			for start := time.Now(); time.Since(start) < 90*time.Microsecond; {
			}
		}},
		{"after-sleeping", func() { time.Sleep(90 * time.Microsecond) }},
	}
	for _, g := range gaps {
		b.Run(g.name, func(b *testing.B) {
			var read time.Duration
			for b.Loop() {
				g.wait()
				start := time.Now()
				if _, err := st.Get(ctx, store.OwnedBy("alice"), j.ID); err != nil {
					b.Fatal(err)
				}
				read += time.Since(start)
			}
			b.ReportMetric(float64(read.Nanoseconds())/1e3/float64(b.N), "read-µs")
		})
	}
}
