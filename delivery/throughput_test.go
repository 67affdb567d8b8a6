package delivery_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/webhook"
)

// BenchmarkDeliveryThroughput measures the delivery loop's cost per event
// as the bench's worker burn-down loads it: one endpoint (a loopback
// receiver answering 204 at once), b.N jobs already ended and held by
// outbox rows of 100 jobs each (as outcome statements write them), sent
// as fast as the loop goes with the endpoint's concurrency at 32. Its
// ns/op is wall time per event; run it with -cpuprofile to see where this
// process's CPU goes (PostgreSQL's is not counted).
//
//	go test -run '^$' -bench DeliveryThroughput -benchtime 20000x -cpuprofile cpu.out ./delivery/
func BenchmarkDeliveryThroughput(b *testing.B) {
	const perRow = 100
	st, _ := pgtest.NewStore(b)
	ctx := context.Background()
	var received atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	sealer, _ := webhook.NewSealer("")
	secret, _ := webhook.NewSecret()
	key, _ := webhook.ParseSecret(secret)
	sealed, _ := sealer.Seal(key)
	if _, err := st.CreateWebhook(ctx, store.NewWebhook{UserID: "user-0", URL: rcv.URL + "/hook",
		EventTypes: []string{store.EventJobCompleted, store.EventJobFailed}, Secret: sealed}); err != nil {
		b.Fatal(err)
	}
	if _, err := st.DB().Exec(`INSERT INTO jobs (id, user_id, type, input, status, result, attempts, started_at, completed_at)
		SELECT gen_random_uuid(), 'user-0', 'AI_PREVIEW', '{"prompt":"x"}', 'COMPLETED', '{"output":"some result text"}', 1, now(), now()
		FROM generate_series(1, $1)`, b.N); err != nil {
		b.Fatal(err)
	}
	if _, err := st.DB().Exec(`INSERT INTO webhook_outbox (job_ids)
		SELECT array_agg(id) FROM (SELECT id, (row_number() OVER ()) / $1 AS g FROM jobs) j GROUP BY g ORDER BY g`, perRow); err != nil {
		b.Fatal(err)
	}
	wake := make(chan struct{})
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	go func() {
		delivery.Run(loopCtx, delivery.Config{Store: st, Sealer: sealer, AllowPrivate: true, EncodeJob: impl.WebhookJSON,
			Wake: wake, PerEndpoint: 32, Poll: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var left int
		if err := st.DB().Get(&left, `SELECT count(*) FROM webhook_outbox`); err != nil {
			b.Fatal(err)
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // a benchmark's wait for the tail; no test asserts on it
	}
	b.StopTimer()
	stop()
	<-done
	if got := received.Load(); got < int64(b.N) {
		b.Fatalf("%d of %d events received", got, b.N)
	}
}
