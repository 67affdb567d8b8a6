// Package worker runs jobs: it claims them from the store, runs each type's
// handler, and writes the outcome, fenced on the attempt's lease.
//
// The promises, for every job, however its handler behaves:
//   - PROCESSING means a worker has it: a claim is committed (attempt counted,
//     lease, worker id) before any handler code runs.
//   - At most MaxAttempts attempts: a worker that dies at any moment has
//     already counted its attempt, and the rescuer retries the job when the
//     lease expires, or fails it with "Worker lost while processing the job"
//     after its last attempt.
//   - Every attempt ends by its deadline: a handler that ignores its context
//     is abandoned by the watchdog, which writes the attempt as timed out
//     (fenced, so the stuck work can never write later) and replaces the
//     slot; a worker with too many stuck handlers exits for its supervisor.
//
// Execution is at-least-once (a handler may run again when its worker dies
// mid-call) and completion exactly-once.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// Handler runs one attempt of a job and returns its result, a JSON object.
// It must return when ctx ends (the attempt's deadline, a cancellation, a
// shutdown); one that does not is abandoned (see the package comment).
type Handler func(ctx context.Context, a Attempt) (json.RawMessage, error)

// Attempt is what a handler gets: one attempt at a job, with the job's
// input (which job.Job, the job as clients see it, leaves out).
type Attempt struct {
	ID          uuid.UUID
	UserID      string
	Type        job.Type
	Input       json.RawMessage
	Attempt     int // 1 for the first attempt
	MaxAttempts int
}

// Classifier says whether an error is worth another attempt, and the text a
// client sees in the job's `error` field if it ends the job.
type Classifier func(err error) (retryable bool, clientMessage string)

// ErrTooManyStuck is what Run returns when more handlers ignored their
// deadline than Config.MaxStuck allows: their goroutines cannot be stopped
// from inside the process, so the process should exit and be restarted.
var ErrTooManyStuck = errors.New("worker: too many handlers ignored their deadline")

// Worker claims and runs jobs until its context ends.
type Worker struct {
	cfg Config
	id  string
	log *slog.Logger

	mu sync.Mutex
	// inflight holds every attempt this worker holds a lease for: running,
	// abandoned, or with its outcome waiting to be written. Heartbeats
	// extend their leases.
	inflight map[uuid.UUID]*attempt
	// claims counts, per claim (its lease), the attempts not yet ended;
	// released holds the leases of claims whose attempts have all ended,
	// for the next heartbeat to delete. A claim with an outcome that could
	// not be written is never released (unwritten): its lease must expire
	// for the rescuer to find that job.
	claims    map[uuid.UUID]int
	unwritten map[uuid.UUID]bool
	released  []uuid.UUID
	// busy counts the slots in use. An attempt frees its slot once its
	// outcome is queued for the writer (so the next claim overlaps the
	// write), or when the watchdog abandons it.
	busy  int
	stuck int // abandoned handlers that have not returned

	tasks    chan *attempt // claimed attempts for the runners
	outcomes chan ending   // finished attempts for the writer
	pending  sync.WaitGroup
	done     chan struct{} // a slot was freed, or a retry became due
	fatal    chan error    // ErrTooManyStuck, once

	ready   atomic.Bool // claiming: between start-up and shutdown
	started time.Time   // when Run began: the registry's startedAt

	// Where the next claim starts (the claim loop's alone): past the last
	// claim while claims come back full, else from the head (see claimFrom).
	cursor     *store.QueueKey
	headPicked time.Time // the last claim from the head

	// onEnded, when set, hears of every attempt once its outcome was
	// written or dropped (RunClaimed's report).
	onEnded func(e ending, ok bool, werr error)

	// userAfter is where the next claim's round robin over users starts
	// (store.ClaimRequest.UserAfter): after the user served last.
	userAfter string

	// What the last full claim (the walk over users) found, for the
	// window claims in between (see windowUsers): when it ran, and how many
	// users its jobs went to.
	fullClaimed time.Time
	fullUsers   int
}

// New returns a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil || len(cfg.Handlers) == 0 {
		return nil, errors.New("worker: Store and Handlers are required")
	}
	cfg.setDefaults()
	id := uuid.NewString()[:8]
	return &Worker{
		cfg:       cfg,
		id:        id,
		log:       cfg.Log.With("worker", id),
		inflight:  map[uuid.UUID]*attempt{},
		claims:    map[uuid.UUID]int{},
		unwritten: map[uuid.UUID]bool{},
		tasks:     make(chan *attempt, cfg.Concurrency),
		outcomes:  make(chan ending, maxBatch),
		done:      make(chan struct{}, 1),
		fatal:     make(chan error, 1),
	}, nil
}

// ID is the worker's id, recorded on every job it claims.
func (w *Worker) ID() string { return w.id }

// Ready reports whether the worker is claiming jobs: started and not
// shutting down (a health endpoint's /readyz).
func (w *Worker) Ready() bool { return w.ready.Load() }

// Run works until ctx ends, then stops claiming, lets in-flight jobs finish
// for up to ShutdownWait and hands the rest back without counting their
// attempt. It returns nil after a clean shutdown, ErrTooManyStuck when the
// watchdog gave up on the process. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	log := w.log
	w.started = time.Now()
	wake, cancelled, closeListener := w.listen(log)
	defer closeListener()

	// Attempts outlive ctx (shutdown lets them finish); stopJobs ends them.
	jobCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	stopMachinery := w.startMachinery(ctx, w.maintain, w.cfg.Concurrency)

	log.Info("worker ready", "concurrency", w.cfg.Concurrency, "lease", w.cfg.Lease.String(),
		"job_timeout", w.cfg.JobTimeout.String(), "listening", wake != nil)
	w.ready.Store(true)
	runErr := w.claimLoop(ctx, jobCtx, wake, cancelled)

	w.ready.Store(false)
	w.shutdown(stopJobs, log)
	stopMachinery()
	w.releaseClaims(log)
	w.unregister(log)
	log.Info("worker stopped", "err", runErr)
	return runErr
}

// startMachinery starts what runs attempts, for Run and RunClaimed alike:
// keepLeases and the watchdog in the background, under a context of their
// own that ctx's end does not cancel; the outcome writer; and runners
// runners. The two callers differ on purpose in these two parameters only:
// Run passes maintain (heartbeats, the registry, rescue, retention) and
// Concurrency runners, one per slot; RunClaimed passes heartbeats alone
// (rescue and retention are left to the deployment's schedule) and a runner
// per attempt it was given.
//
// The caller calls the returned stop once every attempt has ended or been
// handed back (Run's shutdown, RunClaimed's wait): it stops the background
// goroutines, closes the outcome queue and waits for the writer to write
// it out, then closes the task queue, which ends the runners.
func (w *Worker) startMachinery(ctx context.Context, keepLeases func(context.Context, *slog.Logger), runners int) (stop func()) {
	log := w.log
	var bgDone sync.WaitGroup
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	bgDone.Add(2)
	go func() { defer bgDone.Done(); keepLeases(bg, log) }()
	go func() { defer bgDone.Done(); w.watchdog(bg, log) }()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); w.writer(log) }()
	for range runners {
		go w.runner()
	}
	return func() {
		stopBG()
		bgDone.Wait()
		close(w.outcomes)
		<-writerDone
		close(w.tasks)
	}
}

// shutdown waits for in-flight jobs up to ShutdownWait, then cancels the
// rest and hands them back; a handler that ignores that too is abandoned
// after Grace and handed back all the same, so shutdown always ends.
func (w *Worker) shutdown(stopJobs context.CancelFunc, log *slog.Logger) {
	w.mu.Lock()
	n := len(w.inflight)
	w.mu.Unlock()
	log.Info("worker stopping: no new claims", "in_flight", n, "wait", w.cfg.ShutdownWait.String())
	finished := make(chan struct{})
	go func() { w.pending.Wait(); close(finished) }()
	if waitOrTimeout(finished, w.cfg.ShutdownWait) {
		return
	}
	w.mu.Lock()
	for _, a := range w.inflight {
		a.handedBack = true
	}
	w.mu.Unlock()
	stopJobs()
	if waitOrTimeout(finished, w.cfg.Grace) {
		return
	}
	// Every handler still running is abandoned now, whatever its deadline.
	now := time.Now()
	w.mu.Lock()
	for _, a := range w.inflight {
		a.deadline = now.Add(-1)
	}
	w.mu.Unlock()
	w.abandon(now, log)
	<-finished
}

func waitOrTimeout(c <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// String names the worker in logs.
func (w *Worker) String() string { return fmt.Sprintf("worker %s", w.id) }
