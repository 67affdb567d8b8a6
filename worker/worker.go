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
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/notify"
	"github.com/jobsd/jobsd/store"
)

// Handler runs one attempt of a job and returns its result, a JSON object.
// It must return when ctx ends (the attempt's deadline, a cancellation, a
// shutdown); one that does not is abandoned (see the package comment).
type Handler func(ctx context.Context, job Job) (json.RawMessage, error)

// Job is what a handler gets.
type Job struct {
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

// Config tunes a Worker. Zero values take the defaults in parentheses.
type Config struct {
	Store    *store.Store
	Handlers map[job.Type]Handler
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
	BackoffBase   time.Duration // first retry delay; doubles per attempt, with jitter (1 s)
	BackoffMax    time.Duration // retry delay cap (1 min)
	JobTimeout    time.Duration // one attempt's deadline (5 min)
	// Grace is how long a handler may take to return once its context has
	// ended (deadline, cancellation, shutdown) before the watchdog abandons
	// it (2 s).
	Grace        time.Duration
	ShutdownWait time.Duration // how long in-flight jobs may finish on shutdown (20 s)
	// MaxStuck is how many abandoned handlers may still be running before
	// Run gives up with ErrTooManyStuck ((Concurrency+1)/2).
	MaxStuck int
	// Metrics receives the worker's series; nil records nothing.
	Metrics *metrics.Worker
	// Retention is how long finished jobs are kept (0: for ever). Every
	// RetentionEvery (1 min) one worker of the deployment deletes older
	// ones, in batches of 1,000.
	Retention      time.Duration
	RetentionEvery time.Duration
	// UserConcurrency, when above 0, caps how many of one user's jobs run
	// at once across every worker of the deployment (each claim counts the
	// user's leased jobs); 0 sets no cap. Every worker of a deployment must
	// use the same value.
	UserConcurrency int
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = job.DefaultConcurrency
	}
	def(&c.Lease, 30*time.Second)
	def(&c.Heartbeat, c.Lease/3)
	def(&c.RescueEvery, c.Lease/2)
	def(&c.PollEvery, 2*time.Second)
	def(&c.ClaimCooldown, 2*time.Millisecond)
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.JobTimeout, 5*time.Minute)
	def(&c.Grace, 2*time.Second)
	def(&c.ShutdownWait, 20*time.Second)
	def(&c.RetentionEvery, time.Minute)
	if c.MaxStuck <= 0 {
		c.MaxStuck = (c.Concurrency + 1) / 2
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Classify == nil {
		c.Classify = func(error) (bool, string) { return true, job.ErrTextInternal }
	}
}

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
		cfg:      cfg,
		id:       id,
		log:      cfg.Log.With("worker", id),
		inflight: map[uuid.UUID]*attempt{},
		tasks:    make(chan *attempt, cfg.Concurrency),
		outcomes: make(chan ending, maxBatch),
		done:     make(chan struct{}, 1),
		fatal:    make(chan error, 1),
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
	var bgDone sync.WaitGroup
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	bgDone.Add(2)
	go func() { defer bgDone.Done(); w.maintain(bg, log) }()
	go func() { defer bgDone.Done(); w.watchdog(bg, log) }()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); w.writer(log) }()
	for range w.cfg.Concurrency {
		go w.runner()
	}

	log.Info("worker ready", "concurrency", w.cfg.Concurrency, "lease", w.cfg.Lease.String(),
		"job_timeout", w.cfg.JobTimeout.String(), "listening", wake != nil)
	var runErr error
	w.ready.Store(true)
	poll := time.NewTicker(w.cfg.PollEvery)
	defer poll.Stop()
loop:
	for ctx.Err() == nil {
		n, asked, err := w.claimAndStart(ctx, jobCtx)
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
		case runErr = <-w.fatal:
			break loop
		case <-wake:
		case id := <-cancelled:
			w.cancelJob(id)
		case <-w.done:
		case <-poll.C:
		}
	}

	w.ready.Store(false)
	w.shutdown(stopJobs, log)
	stopBG()
	bgDone.Wait()
	close(w.outcomes)
	<-writerDone
	close(w.tasks)
	w.unregister(log)
	log.Info("worker stopped", "err", runErr)
	return runErr
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

// claimAndStart claims up to as many jobs as there are free slots and hands
// them to the runners; it returns how many it claimed and how many it asked
// for.
func (w *Worker) claimAndStart(ctx, jobCtx context.Context) (claimed, asked int, err error) {
	w.mu.Lock()
	n := w.cfg.Concurrency - w.busy
	w.mu.Unlock()
	if n <= 0 {
		return 0, 0, nil
	}
	req := store.ClaimRequest{Worker: w.id, N: n, Lease: w.cfg.Lease, After: w.claimFrom(),
		UserAfter: w.userAfter, UserConcurrency: w.cfg.UserConcurrency, Users: w.windowUsers(n)}
	// A claim is never cut short by shutdown (the store's own timeout
	// bounds it): cancelled mid-statement, it may have committed while its
	// reply is dropped, leaving jobs PROCESSING under a lease that nobody
	// runs until it expires. Claimed jobs are started, and shutdown then
	// lets them finish or hands them back.
	got, last, err := w.claim(context.WithoutCancel(ctx), &req)
	w.claimedTo(len(got), last, n, req.After == nil)
	w.claimedUsers(req, got, err)
	if err != nil {
		return 0, n, err
	}
	for _, c := range got {
		w.start(jobCtx, c)
	}
	return len(got), n, nil
}

// claim makes the claim req asks for, and the ones its answer calls for:
// a full claim when a window claim found too few users' jobs, and a claim
// from the head when nothing lies past the cursor. req is left as the
// claim that answered.
func (w *Worker) claim(ctx context.Context, req *store.ClaimRequest) ([]store.Claimed, store.QueueKey, error) {
	got, last, err := w.cfg.Store.Claim(ctx, *req)
	if err == nil && len(got) == 0 && req.Users > 0 {
		req.Users = 0 // walk every waiting user
		got, last, err = w.cfg.Store.Claim(ctx, *req)
	}
	if err == nil && len(got) == 0 && req.After != nil {
		req.After = nil // look from the head before going idle
		got, last, err = w.cfg.Store.Claim(ctx, *req)
	}
	return got, last, err
}

// headClaimEvery bounds how long claims may go on from the cursor: a job
// placed before it (committed late with an earlier run_after, or handed
// back) waits at most this long in a backlog.
const headClaimEvery = time.Second

// claimFrom is where the next claim starts: past the last claim while a
// backlog lasts, which skips the dead index entries that claimed jobs leave
// at the queue's head (store.QueueKey); from the head otherwise, and at
// least every headClaimEvery.
func (w *Worker) claimFrom() *store.QueueKey {
	if w.cursor == nil || time.Since(w.headPicked) > headClaimEvery {
		return nil
	}
	return w.cursor
}

// claimedTo moves the cursor after a claim of got jobs out of n asked: a
// full claim means a backlog, and the next goes on from its last job; a
// short or failed one sends the next back to the head.
func (w *Worker) claimedTo(got int, last store.QueueKey, n int, fromHead bool) {
	if fromHead {
		w.headPicked = time.Now()
	}
	if got < n {
		w.cursor = nil
		return
	}
	w.cursor = &last
}

// fullClaimEvery bounds how long window claims may go on between full
// claims: a user whose first job lies beyond the windows (behind other
// users' backlogs) waits at most about this long to be walked to.
const fullClaimEvery = time.Second

// windowUsers is the next claim's store.ClaimRequest.Users: 0 for a full
// claim, which walks every user with jobs waiting and serves them by turns
// (fair.go), or, while the last full claim is recent and served several
// users, and the claim has room for one job of each, that number: a window
// claim of the next n jobs in queue order, taken when they are spread over
// at least that many users, which is what a full claim would take from
// users whose jobs are interleaved, at a fraction of the cost. With one
// user waiting, or with a per-user cap, every claim is a full one.
func (w *Worker) windowUsers(n int) int {
	if w.cfg.UserConcurrency > 0 || w.fullUsers < 2 || n < w.fullUsers || time.Since(w.fullClaimed) > fullClaimEvery {
		return 0
	}
	return w.fullUsers
}

// claimedUsers records what a claim found for the choice of the next: a
// full claim's time and number of users, and the round robin's place; a
// window claim that came back short (SKIP LOCKED rows, the end of the
// backlog) or failed makes the next claim a full one.
func (w *Worker) claimedUsers(req store.ClaimRequest, got []store.Claimed, err error) {
	if req.Users > 0 {
		if err != nil || len(got) < req.N {
			w.fullClaimed = time.Time{}
		}
		return
	}
	w.userAfter = store.NextUserAfter(w.userAfter, got)
	if err == nil {
		users := make(map[string]struct{}, 8)
		for _, c := range got {
			users[c.UserID] = struct{}{}
		}
		w.fullClaimed, w.fullUsers = time.Now(), len(users)
	}
}

// cancelJob stops the handler of a job that was cancelled or whose lease
// was lost; if it does not return within Grace, the watchdog abandons it.
func (w *Worker) cancelJob(id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a, ok := w.inflight[id]; ok {
		a.stop(time.Now().Add(w.cfg.Grace))
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

// listen subscribes to new jobs and cancellations. Without a ListenURL it
// returns nil channels, which never fire: the worker then polls.
func (w *Worker) listen(log *slog.Logger) (wake <-chan struct{}, cancelled <-chan uuid.UUID, closeFn func()) {
	if w.cfg.ListenURL == "" {
		return nil, nil, func() {}
	}
	wakeC := make(chan struct{}, 1)
	cancelC := make(chan uuid.UUID, 64)
	claimAgain := func() {
		select {
		case wakeC <- struct{}{}:
		default:
		}
	}
	handle := func(channel, payload string) {
		switch channel {
		case notify.JobsInserted:
			claimAgain()
		case notify.JobsCancelled:
			if id, err := uuid.Parse(payload); err == nil {
				cancelC <- id
			}
		}
	}
	// After a reconnection, re-read everything: claim again.
	l := notify.Listen(w.cfg.ListenURL, []string{notify.JobsInserted, notify.JobsCancelled}, log, handle, claimAgain)
	return wakeC, cancelC, func() {
		if err := l.Close(); err != nil {
			log.Warn("closing the notification listener", "err", err)
		}
	}
}

// maintain extends held leases and rescues expired ones until ctx ends.
func (w *Worker) maintain(ctx context.Context, log *slog.Logger) {
	hb := time.NewTicker(w.cfg.Heartbeat)
	defer hb.Stop()
	rescue := time.NewTicker(w.cfg.RescueEvery)
	defer rescue.Stop()
	retention := time.NewTicker(w.cfg.RetentionEvery)
	defer retention.Stop()
	w.register(ctx, log)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			w.heartbeat(ctx, log)
			w.register(ctx, log)
		case <-retention.C:
			w.deleteExpired(ctx, log)
		case <-rescue.C:
			retried, failed, err := w.cfg.Store.Rescue(ctx, w.backoff(1))
			if err != nil && ctx.Err() == nil {
				log.Warn("rescue failed", "err", err)
			} else if retried+failed > 0 {
				log.Warn("rescued jobs of lost workers", "retried", retried, "failed", failed)
				w.cfg.Metrics.Rescued(retried, failed)
			}
		}
	}
}

// retentionBatch is how many finished jobs one statement deletes, and
// retentionBatches how many statements one round may run: small
// transactions that hold few row locks, and a bounded round.
const (
	retentionBatch   = 1000
	retentionBatches = 100
)

// deleteExpired deletes finished jobs older than Retention, batch by batch
// while batches come back full. Only one process of the deployment deletes
// at a time (the store's advisory lock); the others find nothing to do.
func (w *Worker) deleteExpired(ctx context.Context, log *slog.Logger) {
	if w.cfg.Retention <= 0 {
		return
	}
	total := 0
	for range retentionBatches {
		n, err := w.cfg.Store.DeleteFinished(ctx, time.Now().Add(-w.cfg.Retention), retentionBatch)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("deleting expired jobs failed", "err", err)
			}
			break
		}
		total += n
		if n < retentionBatch {
			break
		}
	}
	if total > 0 {
		log.Info("deleted finished jobs past their retention", "jobs", total, "retention", w.cfg.Retention.String())
	}
}

func (w *Worker) heartbeat(ctx context.Context, log *slog.Logger) {
	w.mu.Lock()
	held := make([]store.Claimed, 0, len(w.inflight))
	for _, a := range w.inflight {
		held = append(held, a.claim)
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
