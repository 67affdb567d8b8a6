package worker

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/jobsd/jobsd/internal/buildinfo"
	"github.com/jobsd/jobsd/store"
)

// The worker registry: each worker keeps an entry (id, host, process,
// version, concurrency, jobs in flight) fresh at every heartbeat, so that
// operators see who is working (the admin API's workers), and removes it
// when it stops cleanly. A killed worker's entry ages out of the list.

// info is the worker's registry entry as of now.
func (w *Worker) info() store.Process {
	host, _ := os.Hostname()
	w.mu.Lock()
	inFlight := len(w.inflight)
	w.mu.Unlock()
	return store.Process{ID: w.id, Kind: store.KindWorker, Host: host, PID: os.Getpid(),
		Version: buildinfo.Read().Short(), Concurrency: w.cfg.Concurrency, InFlight: inFlight, StartedAt: w.started}
}

// register writes the worker's entry; a failure is logged and retried at
// the next heartbeat (the registry is for people, not for correctness).
func (w *Worker) register(ctx context.Context, log *slog.Logger) {
	if _, err := w.cfg.Store.RegisterProcess(ctx, w.info()); err != nil && ctx.Err() == nil {
		log.Warn("worker registry: register failed", "err", err)
	}
}

// unregister removes the entry at a clean stop, with a short deadline of
// its own: the context of the run has ended.
func (w *Worker) unregister(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.cfg.Store.UnregisterProcess(ctx, w.id); err != nil {
		log.Warn("worker registry: unregister failed", "err", err)
	}
}
