package impl

import (
	"context"
	"sync"
	"time"
)

// The cap on each user's open waiters (long polls that wait, event
// streams), exact across replicas: see the comment on limits in
// ratelimit.go.

// waiterOpenTimeout bounds the database's answer to a waiter's open: past
// it, the request is admitted by this process's share instead of waiting
// longer for a slot than a client would wait for its answer.
const waiterOpenTimeout = 2 * time.Second

// waiterCloseTimeout bounds a waiter's close, which runs after the request
// may have ended (client gone, drain): it has a deadline of its own.
const waiterCloseTimeout = 5 * time.Second

// waiterSlots caps each user's open long polls and event streams. With a
// registry of API processes (Replicas, which has the store), each waiter is
// a row of the waiters table, opened and deleted once per waiter (never per
// poll), and the cap holds exactly for the whole deployment. When the
// database refuses the open (down, slow, this process not yet registered),
// the request is not failed: this process admits it against its share of
// the cap, total ÷ N, as if the other processes held their shares. Without
// a registry (one process, tests) the cap is counted here alone.
type waiterSlots struct {
	total int // the deployment-wide cap per user
	mu    sync.Mutex
	// open counts this process's waiters per user, whether the table or
	// the share admitted them: the share is checked against all of them.
	open map[string]int
	// unclosed are table rows to delete: of waiters that ended (closeLater
	// deletes them in batches), whose delete failed, or whose open failed
	// with an unknown outcome. Until then they count against their users
	// (and go with this process's registry entry at the latest).
	unclosed []int64
	closing  bool       // closeLater is running
	closeMu  sync.Mutex // held by a delete of unclosed rows (closeNow)
}

// waiterSlot is one taken slot: the user's, and its row in the waiters
// table (0 when this process's share admitted it).
type waiterSlot struct {
	user string
	row  int64
}

// newWaiterSlots caps each user's waiters at total across the deployment; 0
// turns the cap off (nil).
func newWaiterSlots(total int) *waiterSlots {
	if total <= 0 {
		return nil
	}
	return &waiterSlots{total: total, open: map[string]int{}}
}

// acquire takes one of the user's slots, or says there is none. Whoever
// takes a slot releases it once.
func (w *waiterSlots) acquire(ctx context.Context, user string, r *Replicas) (waiterSlot, bool) {
	if w == nil {
		return waiterSlot{}, true
	}
	if r != nil {
		octx, cancel := context.WithTimeout(ctx, waiterOpenTimeout)
		// Rows of waiters that ended and wait for closeLater go first, so
		// that a client which polls again the moment its answer came finds
		// its place free on this process at least.
		_ = w.closeNow(octx, r) // a failure keeps them for later; the open goes on
		row, ok, err := r.openWaiter(octx, user, w.total)
		cancel()
		if err == nil {
			if ok {
				w.count(user, 1)
			}
			return waiterSlot{user: user, row: row}, ok
		}
		// The open may have committed before it failed (a connection lost
		// after the commit): close the row with the next close, to be sure.
		w.unclose(row)
		if ctx.Err() != nil {
			return waiterSlot{}, false // the client left; nothing to admit
		}
		r.log.Warn("waiter cap: open in the database failed; admitting by this process's share", "err", err)
	}
	return waiterSlot{user: user}, w.acquireShare(user, r.Count())
}

// acquireShare takes one of the user's slots in this process when n
// processes share the cap, or says there is none.
func (w *waiterSlots) acquireShare(user string, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[user] >= shareOf(w.total, n) {
		return false
	}
	w.open[user]++
	return true
}

// count adds d to the user's waiters in this process.
func (w *waiterSlots) count(user string, d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[user] += d; w.open[user] <= 0 {
		delete(w.open, user) // the map holds only users who are waiting
	}
}

// release gives back a slot that acquire took. Its row is deleted in the
// background (closeLater), with the rows of the waiters that ended
// meanwhile, in one statement: a long poll's answer is not held back by a
// delete, and a burst of answers costs one delete, not one each. Until
// then, a few milliseconds, the row still counts against its user on the
// other processes; this one deletes it before its next open.
func (w *waiterSlots) release(ctx context.Context, slot waiterSlot, r *Replicas) {
	if w == nil {
		return
	}
	w.count(slot.user, -1)
	if slot.row == 0 || r == nil {
		return
	}
	w.mu.Lock()
	w.unclosed = append(w.unclosed, slot.row)
	start := !w.closing
	w.closing = true
	w.mu.Unlock()
	if start {
		go w.closeLater(context.WithoutCancel(ctx), r)
	}
}

// closeBatchDelay is how long a waiter's row waits for others to be
// deleted with it.
const closeBatchDelay = 5 * time.Millisecond

// closeLater deletes the rows of the waiters that ended, a batch every
// closeBatchDelay, until none is left or a delete fails (the rows are then
// kept for the next close).
func (w *waiterSlots) closeLater(ctx context.Context, r *Replicas) {
	for {
		time.Sleep(closeBatchDelay)
		// Seen empty and marked stopped under one lock: a release that
		// comes after starts another closeLater.
		w.mu.Lock()
		if len(w.unclosed) == 0 {
			w.closing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, waiterCloseTimeout)
		err := w.closeNow(cctx, r)
		cancel()
		if err != nil {
			w.mu.Lock()
			w.closing = false // the next release tries again
			w.mu.Unlock()
			return
		}
	}
}

// closeNow deletes the rows waiting to be closed, if any; a failed delete
// keeps them for the next try. Closes run one
// at a time (closeMu), so that an open which closes first also waits for a
// delete already under way: the rows of every waiter that ended before it
// are gone when it counts.
func (w *waiterSlots) closeNow(ctx context.Context, r *Replicas) error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	w.mu.Lock()
	rows := w.unclosed
	w.unclosed = nil
	w.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	if err := r.closeWaiters(ctx, rows); err != nil {
		r.log.Warn("waiter cap: close in the database failed; retried at the next close", "rows", len(rows), "err", err)
		w.unclose(rows...)
		return err
	}
	return nil
}

// unclose keeps rows for the next close to delete.
func (w *waiterSlots) unclose(rows ...int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rows {
		if r != 0 {
			w.unclosed = append(w.unclosed, r)
		}
	}
}

// errTooManyWaiters is the 429 of a long poll or event stream over the cap:
// the client may retry once one of its waiters has ended.
var errTooManyWaiters = tooManyRequests(RetryAfterSeconds)
