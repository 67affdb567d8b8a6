package dispatch

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/buildinfo"
	"github.com/jobsd/jobsd/store"
)

// The worker registry, for a Lambda instance.
//
// Each instance (one process, many invocations) keeps an entry in the
// process registry (kind worker) as a long-lived worker does, so that the
// admin API's workers listing shows it: its id is the workerId of the jobs
// it claims, its host the function name and log stream, its concurrency the
// largest batch it has run, its in-flight count the jobs of the batch it
// runs now. The entry is written at the start and end of every invocation
// and every refreshEvery while a batch runs. Between invocations Lambda
// freezes the instance, so an idle instance drops out of the listing after
// store.WorkerSeenWithin and comes back with its next invocation; the
// runtime's SIGTERM at shutdown removes it (Unregister), and the entry of an
// instance that ended without one is deleted after a day by any process's
// registration.

// refreshEvery is how often a running batch refreshes the entry: well
// within store.WorkerSeenWithin, so that a long batch stays listed.
const refreshEvery = store.WorkerSeenWithin / 3

// instance is this process's registry entry.
type instance struct {
	st *store.Store

	mu   sync.Mutex
	info store.Process
}

func newInstance(st *store.Store, host string) *instance {
	if host == "" {
		host, _ = os.Hostname()
	}
	return &instance{st: st, info: store.Process{
		ID: "lambda-" + uuid.NewString()[:8], Kind: store.KindWorker, Host: host, PID: os.Getpid(),
		Version: buildinfo.Read().Short(), Concurrency: 1, StartedAt: time.Now(),
	}}
}

// running records that n jobs run now (0: none), raising the concurrency
// shown to the largest batch seen.
func (in *instance) running(n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.info.InFlight = n
	in.info.Concurrency = max(in.info.Concurrency, n)
}

// register writes the entry. A failure is logged by the caller and costs
// nothing else: the registry is for people, not for correctness.
func (in *instance) register(ctx context.Context) error {
	in.mu.Lock()
	info := in.info
	in.mu.Unlock()
	_, err := in.st.RegisterProcess(ctx, info)
	return err
}

// refresh registers every refreshEvery until ctx ends.
func (in *instance) refresh(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := in.register(ctx); err != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}
