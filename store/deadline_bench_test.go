package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/pgtest"
)

// BenchmarkQueryDeadline is what a context with a deadline costs one
// prepared round trip through database/sql and lib/pq, against the same
// query with context.Background(), alternating in one loop: with a Done
// channel, database/sql (Rows.awaitDone) and lib/pq (watchCancel) each start
// a goroutine per query. Every status read (readPool.getMany) pays it; the
// deadline is what bounds a read stuck on a dead connection.
func BenchmarkQueryDeadline(b *testing.B) {
	_, url := pgtest.NewStore(b)
	db := sqlx.MustOpen("postgres", url)
	defer db.Close()
	db.SetMaxOpenConns(2)
	stmt, err := db.Prepare("SELECT 1 WHERE $1::int = 1")
	if err != nil {
		b.Fatal(err)
	}
	one := func(ctx context.Context) {
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
	var tBg, tDl time.Duration
	for b.Loop() {
		t0 := time.Now()
		one(context.Background())
		tBg += time.Since(t0)
		t0 = time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
		one(ctx)
		cancel()
		tDl += time.Since(t0)
	}
	b.ReportMetric(float64(tBg.Microseconds())/float64(b.N), "bg-µs")
	b.ReportMetric(float64(tDl.Microseconds())/float64(b.N), "deadline-µs")
}
