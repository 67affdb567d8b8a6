package impl

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/buildinfo"
	"github.com/jobsd/jobsd/store"
)

// ReplicaHeartbeat is how often an API process refreshes its entry in the
// registry of live API processes, and re-reads how many there are.
const ReplicaHeartbeat = 10 * time.Second

// Replicas is this process's entry in the registry of live API processes
// and its cached count of them, N, by which it divides the per-user rate
// limits. The rows of the waiters table that count this process's open
// waiters reference the entry: they count while it is live, and go with it.
// A process that starts is counted by the others within ReplicaHeartbeat
// (until then a user may get one share more than a limit); one that stops
// cleanly deletes its entry and is counted out at the others' next
// heartbeat, one that dies once store.APIProcessSeenWithin has passed
// (until then a user gets one share less).
type Replicas struct {
	st   *store.Store
	log  *slog.Logger
	self store.Process
	n    atomic.Int64
}

// NewReplicas returns the registry entry of this process, counting itself
// alone until the first Refresh.
func NewReplicas(st *store.Store, log *slog.Logger) *Replicas {
	if log == nil {
		log = slog.Default()
	}
	host, _ := os.Hostname()
	r := &Replicas{st: st, log: log, self: store.Process{
		ID: uuid.NewString(), Kind: store.KindAPI, Host: host, PID: os.Getpid(),
		Version: buildinfo.Read().Short(), StartedAt: time.Now().UTC(),
	}}
	r.n.Store(1)
	return r
}

// Count is the number of live API processes, at least 1; a nil Replicas
// (a single process) is 1.
func (r *Replicas) Count() int {
	if r == nil {
		return 1
	}
	return int(r.n.Load())
}

// Refresh writes this process's heartbeat and reads N in the same statement.
// On failure N keeps its last value: the limits stay as they were rather
// than jump.
func (r *Replicas) Refresh(ctx context.Context) error {
	n, err := r.st.RegisterProcess(ctx, r.self)
	if err != nil {
		return err
	}
	if old := r.n.Swap(int64(max(n, 1))); old != int64(n) {
		r.log.Info("api replicas", "count", n, "was", old)
	}
	return nil
}

// Run refreshes every ReplicaHeartbeat until ctx ends, then removes this
// process's entry, so that the others count it out at their next heartbeat.
func (r *Replicas) Run(ctx context.Context) {
	t := time.NewTicker(ReplicaHeartbeat)
	defer t.Stop()
	for {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("api replicas: heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			r.unregister()
			return
		case <-t.C:
		}
	}
}

// unregister removes the entry with a short deadline of its own: the
// context of the run has ended.
func (r *Replicas) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.st.UnregisterProcess(ctx, r.self.ID); err != nil {
		r.log.Warn("api replicas: unregister failed", "err", err)
	}
}

// openWaiter records one of user's waiters as held by this process, unless
// the user has capacity waiters held by live processes already.
func (r *Replicas) openWaiter(ctx context.Context, user string, capacity int) (row int64, ok bool, err error) {
	return r.st.OpenWaiter(ctx, user, r.self.ID, capacity)
}

// closeWaiters deletes waiter rows that openWaiter returned.
func (r *Replicas) closeWaiters(ctx context.Context, rows []int64) error {
	return r.st.CloseWaiter(ctx, rows...)
}
