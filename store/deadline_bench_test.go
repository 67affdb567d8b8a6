package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// BenchmarkQueryDeadline is what a context with a deadline costs one
// prepared round trip through database/sql and lib/pq, against the same
// query with context.Background(), alternating in one loop: with a Done
// channel, database/sql (Rows.awaitDone) and lib/pq (watchCancel) each start
// a goroutine per query. Status reads used to pay it for the bound on a read
// stuck on a dead connection; they now run with context.Background() on the
// pool of store.OpenPollDB, whose socket deadline is the bound ("socket-µs",
// the same query through that pool).
func BenchmarkQueryDeadline(b *testing.B) {
	_, url := pgtest.NewStore(b)
	db := sqlx.MustOpen("postgres", url)
	defer db.Close()
	db.SetMaxOpenConns(2)
	stmt, err := db.Prepare("SELECT 1 WHERE $1::int = 1")
	if err != nil {
		b.Fatal(err)
	}
	polls, err := store.OpenPollDB(url, 5*time.Second, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer polls.Close()
	pollStmt, err := polls.Prepare("SELECT 1 WHERE $1::int = 1")
	if err != nil {
		b.Fatal(err)
	}
	one := func(ctx context.Context, stmt *sql.Stmt) {
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
	var tBg, tDl, tSock time.Duration
	for b.Loop() {
		t0 := time.Now()
		one(context.Background(), stmt)
		tBg += time.Since(t0)
		t0 = time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
		one(ctx, stmt)
		cancel()
		tDl += time.Since(t0)
		t0 = time.Now()
		one(context.Background(), pollStmt)
		tSock += time.Since(t0)
	}
	b.ReportMetric(float64(tBg.Microseconds())/float64(b.N), "bg-µs")
	b.ReportMetric(float64(tDl.Microseconds())/float64(b.N), "deadline-µs")
	b.ReportMetric(float64(tSock.Microseconds())/float64(b.N), "socket-µs")
}
