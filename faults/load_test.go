package faults

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
)

// Load: creators and pollers of AI previews, a /readyz prober, and the
// wait for the API to answer again after a fault.

// prompts are the job mix: most quick, some slow, some throttled once.
func prompt(i int) string {
	switch i % 10 {
	case 0, 5:
		return fmt.Sprintf("[[simulate:slow=1s]] Job %d. Maize prices fell in March. Roads flood in April.", i)
	case 3:
		return fmt.Sprintf("[[simulate:throttle-once]] Job %d. The harvest was late this year.", i)
	default:
		return fmt.Sprintf("Job %d. Rainfall was low. Farmers sold early at lower prices.", i)
	}
}

// ids collects the ids of created jobs.
type ids struct {
	mu  sync.Mutex
	ids []uuid.UUID
}

func (s *ids) add(id uuid.UUID) {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
}

func (s *ids) list() []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func (s *ids) pick(n int) uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return uuid.Nil
	}
	return s.ids[n%len(s.ids)]
}

// create posts an AI preview (the client must hold an admin token).
func (c *client) create(p string) result {
	return c.do(http.MethodPost, "/api/admin/prompts/preview", map[string]any{"prompt": p})
}

// runLoad runs creators and pollers until ctx ends or maxJobs are created.
// Every response goes to rec; created ids to created.
func runLoad(ctx context.Context, c *client, rec *recorder, created *ids, creators, pollers, maxJobs int) *sync.WaitGroup {
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(n.Add(1))
				if i > maxJobs {
					return
				}
				r := c.create(prompt(i))
				rec.add(r)
				if j, ok := r.job(); ok && r.status == http.StatusAccepted {
					created.add(j.ID)
				}
				sleepCtx(ctx, time.Duration(40+w*7)*time.Millisecond)
			}
		}()
	}
	for w := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; ctx.Err() == nil; k += pollers {
				if id := created.pick(k * 7919); id != uuid.Nil {
					rec.add(c.do(http.MethodGet, "/api/jobs/"+id.String(), nil))
				}
				sleepCtx(ctx, 30*time.Millisecond)
			}
		}()
	}
	return &wg
}

// probeReady polls /readyz every 100 ms until ctx ends.
func probeReady(ctx context.Context, c *client, rec *recorder) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			rec.add(c.do(http.MethodGet, "/readyz", nil))
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}()
	return &wg
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitRecovered waits until a create and a poll both succeed.
func waitRecovered(t testing.TB, c *client, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually.NoError(t, within, "the API to recover", func() error {
		r := c.create("recovery probe")
		if j, ok := r.job(); ok && r.status == http.StatusAccepted {
			if g := c.do(http.MethodGet, "/api/jobs/"+j.ID.String(), nil); g.status == http.StatusOK {
				return nil
			}
		}
		if r.err != nil {
			return fmt.Errorf("last create: %w", r.err)
		}
		return fmt.Errorf("last create: %d %s", r.status, r.body)
	})
	return time.Since(start)
}
