package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/notify"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/webhook"
)

// BenchmarkDeliveryLatency measures the time from a job's outcome commit
// (the worker's outcome statement returning) to the receiver getting the
// event, at 500 events a second for 10 seconds: 50 users with one endpoint
// each, outcomes written 10 at a time every 20 ms, the delivery loop woken
// by LISTEN webhook_deliveries as in jobsd serve, with jobsd's default
// yield setting (the jobs are created as they are paced, so the queue
// never holds JOBS_WEBHOOK_YIELD_BACKLOG of them), a loopback receiver that
// answers 204 at once. It reports the p50, p99 and max in milliseconds.
//
//	go test -run '^$' -bench DeliveryLatency -benchtime 1x ./delivery/
func BenchmarkDeliveryLatency(b *testing.B) {
	const (
		users    = 50
		perTick  = 10
		tick     = 20 * time.Millisecond
		duration = 10 * time.Second
	)
	events := int(duration/tick) * perTick
	for range b.N {
		st, url := pgtest.NewStore(b)
		ctx := context.Background()
		var mu sync.Mutex
		got := map[uuid.UUID]time.Time{}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			at := time.Now()
			body, _ := io.ReadAll(r.Body)
			var ev struct {
				Data struct {
					ID uuid.UUID `json:"id"`
				} `json:"data"`
			}
			_ = json.Unmarshal(body, &ev)
			mu.Lock()
			if _, seen := got[ev.Data.ID]; !seen {
				got[ev.Data.ID] = at
			}
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		})}
		go func() { _ = srv.Serve(ln) }()
		sealer, _ := webhook.NewSealer("")
		for u := range users {
			secret, _ := webhook.NewSecret()
			key, _ := webhook.ParseSecret(secret)
			sealed, _ := sealer.Seal(key)
			if _, err := st.CreateWebhook(ctx, store.NewWebhook{UserID: fmt.Sprintf("user-%d", u), URL: "http://" + ln.Addr().String() + "/hook",
				EventTypes: []string{store.EventJobCompleted}, Secret: sealed}); err != nil {
				b.Fatal(err)
			}
		}

		wake := make(chan struct{}, 1)
		poke := func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		listener := notify.Listen(url, []string{notify.WebhookDeliveries}, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, string) { poke() }, poke)
		listener.WaitUp(10 * time.Second)
		loopCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			delivery.Run(loopCtx, delivery.Config{Store: st, Sealer: sealer, AllowPrivate: true, EncodeJob: impl.WebhookJSON, Wake: wake,
				YieldBacklog: delivery.DefaultYieldBacklog, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			close(done)
		}()

		b.ResetTimer()
		committed := map[uuid.UUID]time.Time{}
		began := time.Now()
		ticker := time.NewTicker(tick)
		for len(committed) < events {
			<-ticker.C
			// Created as they are paced, as an API would: the queue stays
			// short, as at 500 jobs a second, and the loop does not yield.
			if _, err := st.DB().Exec(`INSERT INTO jobs (id, user_id, type, input)
				SELECT gen_random_uuid(), 'user-' || ((g + $3) % $1), 'AI_PREVIEW', '{"prompt":"x"}' FROM generate_series(1, $2) g`,
				users, perTick, len(committed)); err != nil {
				b.Fatal(err)
			}
			claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "bench", N: perTick, Lease: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			outs := make([]store.Outcome, len(claimed))
			for i, c := range claimed {
				outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"x"}`)}
			}
			if _, err := st.Finish(ctx, outs); err != nil {
				b.Fatal(err)
			}
			at := time.Now()
			for _, c := range claimed {
				committed[c.ID] = at
			}
		}
		ticker.Stop()
		rate := float64(events) / time.Since(began).Seconds()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= events || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // a benchmark's wait for the tail; no test asserts on it
		}
		b.StopTimer()
		stop()
		<-done
		_ = listener.Close()
		_ = srv.Close()

		mu.Lock()
		var lat []float64
		for id, at := range committed {
			if r, ok := got[id]; ok {
				lat = append(lat, float64(r.Sub(at).Microseconds())/1000)
			}
		}
		mu.Unlock()
		if len(lat) != events {
			b.Fatalf("%d of %d events delivered", len(lat), events)
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(lat[len(lat)-1], "max-ms")
		b.ReportMetric(rate, "events/s")
		b.Logf("%d events at %.0f/s (paced for %d/s): commit to receiver p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			events, rate, int(time.Second/tick)*perTick, pct(0.5), pct(0.99), lat[len(lat)-1])
	}
}
