// Package worker runs jobs: it claims them from the store in batches, runs
// each type's handler, and writes the outcome, fenced on the attempt's lease.
//
// The promise: at-least-once execution (a handler may run twice when a
// worker dies mid-call), exactly-once completion, and no job lost: a job
// whose worker dies is rescued when its lease expires and either retried or,
// after its last attempt, FAILED with "Worker lost while processing the job".
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/store"
)

// Handler runs one attempt of a job and returns its result, a JSON object.
type Handler func(ctx context.Context, job Job) (json.RawMessage, error)

// Job is what a handler gets.
type Job struct {
	ID          uuid.UUID
	UserID      string
	Type        store.Type
	Input       json.RawMessage
	Attempt     int // 1 for the first attempt
	MaxAttempts int
}

// Classifier says whether an error is worth another attempt, and the text a
// client sees in the job's `error` field if it ends the job.
type Classifier func(err error) (retryable bool, clientMessage string)

// Config tunes a Worker. Zero durations take the defaults in parentheses.
type Config struct {
	Store    *store.Store
	Handlers map[store.Type]Handler
	Classify Classifier // nil: every error is retryable, with a generic message
	Log      *slog.Logger

	// ListenURL, when set, is the database URL the worker LISTENs on for new
	// jobs and cancellations; without it the worker only polls.
	ListenURL string

	Concurrency int           // jobs run at once (8)
	Lease       time.Duration // how long a claim is held without a heartbeat (30 s)
	Heartbeat   time.Duration // how often held leases are extended (Lease/3)
	RescueEvery time.Duration // how often expired leases are looked for (Lease/2)
	PollEvery   time.Duration // fallback poll when no notification comes (2 s)
	// ClaimCooldown is the pause after a claim that filled every free slot,
	// before the next one (2 ms): at a backlog, slots freed meanwhile are
	// claimed together.
	ClaimCooldown time.Duration
	// LockWindow is how long freshly picked jobs run under their batch's row
	// locks alone (50 ms; negative: none, every claim writes a lease at once).
	// A job that finishes within it is written once, PENDING straight to its
	// outcome; one still running then gets its lease and PROCESSING.
	LockWindow   time.Duration
	BackoffBase  time.Duration // first retry delay; doubles per attempt, with jitter (1 s)
	BackoffMax   time.Duration // retry delay cap (1 min)
	JobTimeout   time.Duration // one attempt's deadline (5 min)
	ShutdownWait time.Duration // how long in-flight jobs may finish on shutdown (20 s)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	def(&c.Lease, 30*time.Second)
	def(&c.Heartbeat, c.Lease/3)
	def(&c.RescueEvery, c.Lease/2)
	def(&c.PollEvery, 2*time.Second)
	def(&c.ClaimCooldown, 2*time.Millisecond)
	if c.LockWindow == 0 {
		c.LockWindow = 50 * time.Millisecond
	}
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.JobTimeout, 5*time.Minute)
	def(&c.ShutdownWait, 20*time.Second)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Classify == nil {
		c.Classify = func(error) (bool, string) { return true, "Internal error while processing the job" }
	}
}

// Worker claims and runs jobs until its context ends.
type Worker struct {
	cfg Config
	id  string

	mu sync.Mutex
	// inflight holds every job this worker holds: in a batch still settling
	// (no lease yet), running, or finished with its outcome not yet written.
	// Heartbeats extend the leases of all but the first.
	inflight map[uuid.UUID]*running
	// busy counts the slots in use: jobs whose handler has not finished, or
	// whose outcome could not be queued yet. A job frees its slot once its
	// outcome is queued, so the next claim overlaps the completing write.
	busy        int
	openBatches int           // picked batches not yet settled, each holding a connection
	tasks       chan task     // claimed jobs for the runners; room for Concurrency
	done        chan struct{} // a slot was freed, or a retry became due
	completions chan completion

	// Where the next pick starts (the claim loop's alone): past the last
	// pick while picks come back full, else from the head (see pickFrom).
	cursor     *store.QueueKey
	headPicked time.Time // the last pick from the head
}

type running struct {
	claim  store.Claimed
	cancel context.CancelFunc
	// handedBack is set when the job's context was cancelled by shutdown,
	// so that the attempt is released rather than retried.
	handedBack bool
	slotFreed  bool
	// batch is the picked batch the job came in, nil for a claimed job.
	batch *batch
}

// New returns a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil || len(cfg.Handlers) == 0 {
		return nil, errors.New("worker: Store and Handlers are required")
	}
	cfg.setDefaults()
	return &Worker{
		cfg:         cfg,
		id:          uuid.NewString()[:8],
		inflight:    map[uuid.UUID]*running{},
		done:        make(chan struct{}, 1),
		completions: make(chan completion, maxBatch),
	}, nil
}

// Run works until ctx ends, then stops claiming, lets in-flight jobs finish
// for up to ShutdownWait and hands the rest back without counting their
// attempt. It returns nil after a clean shutdown. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	log := w.cfg.Log.With("worker", w.id)
	wake, cancelled, closeListener := w.listen(log)
	defer closeListener()

	jobCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(2)
	go func() { defer wg.Done(); w.maintain(bg, log) }()
	go func() { defer wg.Done(); w.completer(bg, log) }()

	w.tasks = make(chan task, w.cfg.Concurrency)
	for range w.cfg.Concurrency {
		go w.runner(w.tasks)
	}
	defer close(w.tasks)

	log.Info("worker ready", "concurrency", w.cfg.Concurrency, "lease", w.cfg.Lease.String(), "listening", wake != nil)
	var jobs sync.WaitGroup
	poll := time.NewTicker(w.cfg.PollEvery)
	defer poll.Stop()
	for ctx.Err() == nil {
		n, asked, err := w.claimAndStart(ctx, jobCtx, &jobs, log)
		if err != nil && ctx.Err() == nil {
			log.Warn("claim failed", "err", err)
		}
		if err == nil && n > 0 && n == asked {
			// Every free slot was filled, so more jobs are likely waiting:
			// claim again, after a short cooldown in which freed slots gather
			// into one claim rather than many claims of a job or two. (A claim
			// that found fewer drained the queue: the loop waits for the next
			// notification, poke or poll, adding no delay under light load.)
			w.cooldown(ctx, cancelled)
			continue
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case id := <-cancelled:
			w.cancelJob(id)
		case <-w.done:
		case <-poll.C:
		}
	}

	w.shutdown(&jobs, stopJobs, log)
	stopBG()
	wg.Wait()
	log.Info("worker stopped")
	return nil
}

// cooldown waits ClaimCooldown, still passing on cancellations.
func (w *Worker) cooldown(ctx context.Context, cancelled <-chan uuid.UUID) {
	t := time.NewTimer(w.cfg.ClaimCooldown)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-cancelled:
			w.cancelJob(id)
		case <-t.C:
			return
		}
	}
}

// poke makes the claim loop look for runnable jobs now.
func (w *Worker) poke() {
	select {
	case w.done <- struct{}{}:
	default:
	}
}

// free is the number of idle slots.
func (w *Worker) free() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Concurrency - w.busy
}

// freeSlot gives r's slot back (once) and wakes the claim loop.
func (w *Worker) freeSlot(r *running) {
	w.mu.Lock()
	freed := !r.slotFreed
	if freed {
		r.slotFreed = true
		w.busy--
	}
	w.mu.Unlock()
	if freed {
		w.poke()
	}
}

// claimAndStart claims up to as many jobs as there are free slots and starts
// them; it returns how many it claimed and how many it asked for.
func (w *Worker) claimAndStart(ctx, jobCtx context.Context, jobs *sync.WaitGroup, log *slog.Logger) (claimed, asked int, err error) {
	n := w.free()
	if n <= 0 {
		return 0, 0, nil
	}
	if w.cfg.LockWindow < 0 {
		got, err := w.cfg.Store.Claim(ctx, n, w.cfg.Lease)
		if err != nil {
			return 0, n, err
		}
		w.start(jobCtx, jobs, got, nil, log)
		return len(got), n, nil
	}
	if !w.openBatch() {
		return 0, n, nil // a settling batch will poke
	}
	after := w.pickFrom()
	picked, err := w.cfg.Store.Pick(ctx, n, after)
	if err == nil && picked == nil && after != nil {
		// Nothing past the cursor: look from the head before going idle.
		after = nil
		picked, err = w.cfg.Store.Pick(ctx, n, nil)
	}
	w.pickedTo(picked, n, after == nil)
	if err != nil || picked == nil {
		w.batchDone(false)
		return 0, n, err
	}
	b := newBatch(picked)
	b.jobs = w.start(jobCtx, jobs, picked.Jobs, b, log)
	jobs.Add(1)
	go func() {
		defer jobs.Done()
		w.settle(b, log)
	}()
	return len(picked.Jobs), n, nil
}

// headPickEvery bounds how long a pick may go on from the cursor: a job
// placed before it (committed late with an earlier run_after, or released
// back) waits at most this long in a backlog.
const headPickEvery = time.Second

// pickFrom is where the next pick starts: past the last pick while a
// backlog lasts, which skips the dead index entries that finished jobs leave
// at the queue's head (store.QueueKey); from the head otherwise, and at
// least every headPickEvery.
func (w *Worker) pickFrom() *store.QueueKey {
	if w.cursor == nil || time.Since(w.headPicked) > headPickEvery {
		return nil
	}
	return w.cursor
}

// pickedTo moves the cursor after a pick of up to n jobs: a full pick means
// a backlog, and the next goes on from its last job; a short or failed one
// sends the next back to the head.
func (w *Worker) pickedTo(p *store.Picked, n int, fromHead bool) {
	if fromHead {
		w.headPicked = time.Now()
	}
	if p == nil || len(p.Jobs) < n {
		w.cursor = nil
		return
	}
	last := p.Last
	w.cursor = &last
}

// start hands each claimed job to a runner.
func (w *Worker) start(jobCtx context.Context, jobs *sync.WaitGroup, claimed []store.Claimed, b *batch, log *slog.Logger) []*running {
	out := make([]*running, 0, len(claimed))
	for _, c := range claimed {
		ctx, cancel := context.WithTimeout(jobCtx, w.cfg.JobTimeout)
		r := &running{claim: c, cancel: cancel, batch: b}
		out = append(out, r)
		w.mu.Lock()
		w.inflight[c.ID] = r
		w.busy++
		w.mu.Unlock()
		jobs.Add(1)
		// Never blocks: a job holds its slot until its outcome is queued,
		// and there are Concurrency slots.
		w.tasks <- task{ctx: ctx, r: r, jobs: jobs, log: log}
	}
	return out
}

// cancelJob stops the handler of a job that was cancelled or lost.
func (w *Worker) cancelJob(id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r, ok := w.inflight[id]; ok {
		r.cancel()
	}
}

// shutdown waits for in-flight jobs up to ShutdownWait, then cancels the
// rest and hands them back.
func (w *Worker) shutdown(jobs *sync.WaitGroup, stopJobs context.CancelFunc, log *slog.Logger) {
	w.mu.Lock()
	n := len(w.inflight)
	w.mu.Unlock()
	log.Info("worker stopping: no new claims", "in_flight", n, "wait", w.cfg.ShutdownWait.String())
	finished := make(chan struct{})
	go func() { jobs.Wait(); close(finished) }()
	select {
	case <-finished:
		return
	case <-time.After(w.cfg.ShutdownWait):
	}
	w.mu.Lock()
	for _, r := range w.inflight {
		r.handedBack = true
	}
	w.mu.Unlock()
	stopJobs()
	<-finished
}

// listen subscribes to new jobs and cancellations. Without a ListenURL it
// returns nil channels, which never fire: the worker then polls.
func (w *Worker) listen(log *slog.Logger) (wake <-chan struct{}, cancelled <-chan uuid.UUID, closeFn func()) {
	if w.cfg.ListenURL == "" {
		return nil, nil, func() {}
	}
	l := pq.NewListener(w.cfg.ListenURL, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn("listener", "event", int(ev), "err", err)
		}
	})
	for _, ch := range []string{"jobs_inserted", "jobs_cancelled"} {
		if err := l.Listen(ch); err != nil {
			log.Warn("listen failed; polling only", "channel", ch, "err", err)
		}
	}
	wakeC := make(chan struct{}, 1)
	cancelC := make(chan uuid.UUID, 64)
	go func() {
		for n := range l.Notify {
			switch {
			case n == nil, n.Channel == "jobs_inserted":
				// nil: the connection was re-established; re-read everything.
				select {
				case wakeC <- struct{}{}:
				default:
				}
			case n.Channel == "jobs_cancelled":
				if id, err := uuid.Parse(n.Extra); err == nil {
					cancelC <- id
				}
			}
		}
	}()
	return wakeC, cancelC, func() { l.Close() }
}

// maintain extends held leases and rescues expired ones until ctx ends.
func (w *Worker) maintain(ctx context.Context, log *slog.Logger) {
	hb := time.NewTicker(w.cfg.Heartbeat)
	defer hb.Stop()
	rescue := time.NewTicker(w.cfg.RescueEvery)
	defer rescue.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			w.heartbeat(ctx, log)
		case <-rescue.C:
			retried, failed, err := w.cfg.Store.Rescue(ctx, w.backoff(1))
			if err != nil && ctx.Err() == nil {
				log.Warn("rescue failed", "err", err)
			} else if retried+failed > 0 {
				log.Warn("rescued jobs of lost workers", "retried", retried, "failed", failed)
			}
		}
	}
}

func (w *Worker) heartbeat(ctx context.Context, log *slog.Logger) {
	w.mu.Lock()
	held := make([]store.Claimed, 0, len(w.inflight))
	for _, r := range w.inflight {
		if r.claim.Lease != uuid.Nil { // not in a batch still settling
			held = append(held, r.claim)
		}
	}
	w.mu.Unlock()
	lost, err := w.cfg.Store.Heartbeat(ctx, held, w.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("heartbeat failed", "err", err)
		}
		return
	}
	for _, id := range lost {
		log.Info("lease lost; stopping the handler", "job_id", id)
		w.cancelJob(id)
	}
}

// backoff is the delay before attempt+1: BackoffBase doubled per attempt,
// capped, with full jitter in its upper half so retries spread out.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.BackoffBase << min(attempt-1, 20)
	if d > w.cfg.BackoffMax || d <= 0 {
		d = w.cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// String names the worker in logs.
func (w *Worker) String() string { return fmt.Sprintf("worker %s", w.id) }
