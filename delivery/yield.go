package delivery

import (
	"context"
	"time"
)

// yieldState is whether the loop yields to the queue's backlog: while the
// worker burns a backlog down, the loop claims nothing (so it causes no
// database work) until the backlog is gone or its oldest waiting work has
// waited Config.YieldMax. Only the loop's goroutine touches it.
type yieldState struct {
	checked time.Time   // when the store was last asked; the verdict holds yieldRecheck
	holding bool        // the last verdict: claim nothing
	since   time.Time   // while holding: since when the yielded time is not yet counted
	timer   *time.Timer // while holding: when to ask again
}

// mayClaim reports whether the loop may claim now. It asks the store at
// most every yieldRecheck; in between, the last verdict stands.
func (l *loop) mayClaim(ctx context.Context) bool {
	if l.cfg.YieldBacklog <= 0 {
		return true
	}
	now := time.Now()
	if !l.yield.checked.IsZero() && now.Sub(l.yield.checked) < yieldRecheck {
		return !l.yield.holding
	}
	l.yield.checked = now
	hold := l.shouldYield(ctx)
	l.setYielding(hold, now)
	return !hold
}

// shouldYield: the queue has YieldBacklog jobs due and unclaimed, and some
// webhook work waits, none of it for YieldMax yet. The bounded count comes
// first: without a backlog (a worker keeping up) it is the only statement.
// With nothing waiting (no endpoints, or all caught up) the loop does not
// yield: its claims find nothing and it waits for a wake-up, rather than
// ask again every yieldRecheck. When the store cannot answer, the loop
// claims, and the claim reports the trouble.
func (l *loop) shouldYield(ctx context.Context) bool {
	backlog, err := l.cfg.Store.QueueBacklog(ctx, l.cfg.YieldBacklog)
	if err != nil || !backlog {
		return false
	}
	age, err := l.cfg.Store.WebhookWaitAge(ctx)
	return err == nil && age > 0 && age < l.cfg.YieldMax
}

// setYielding records the verdict: the metrics (the gauge on each change,
// the seconds yielded so far) and, while holding, the timer that asks
// again.
func (l *loop) setYielding(hold bool, now time.Time) {
	l.yieldEnded(now)
	if hold != l.yield.holding {
		l.cfg.Metrics.Yielding(hold)
		if hold {
			l.cfg.Log.Debug("webhooks: yielding to the queue's backlog", "backlog_at_least", l.cfg.YieldBacklog, "max_wait", l.cfg.YieldMax)
		} else {
			l.cfg.Log.Debug("webhooks: delivering again")
		}
	}
	l.yield.holding = hold
	if hold {
		l.yield.since = now
		l.yield.timer.Reset(yieldRecheck)
	}
}

// yieldEnded counts the time yielded since it was last counted.
func (l *loop) yieldEnded(now time.Time) {
	if l.yield.holding {
		l.cfg.Metrics.Yielded(now.Sub(l.yield.since))
		l.yield.since = now
	}
}

// recheck is the channel that wakes a yielding loop to ask again; nil (no
// wake-up) when it is not yielding.
func (l *loop) recheck() <-chan time.Time {
	if !l.yield.holding {
		return nil
	}
	return l.yield.timer.C
}
