package worker

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/store"
)

// The claim loop: how many jobs to claim, from where in the queue, and for
// which users (see store.ClaimRequest).

// claimLoop claims jobs and starts them until ctx ends (then it returns
// nil) or the watchdog gives up on the process (ErrTooManyStuck).
func (w *Worker) claimLoop(ctx, jobCtx context.Context, wake <-chan struct{}, cancelled <-chan uuid.UUID) error {
	poll := time.NewTicker(w.cfg.PollEvery)
	defer poll.Stop()
	for ctx.Err() == nil {
		n, asked, err := w.claimAndStart(ctx, jobCtx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("claim failed", "err", err)
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
		case err := <-w.fatal:
			return err
		case <-wake:
		case id := <-cancelled:
			w.cancelJob(id)
		case <-w.done:
		case <-poll.C:
		}
	}
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
	w.startAll(jobCtx, got)
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
