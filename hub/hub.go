// Package hub fans PostgreSQL notifications of job changes out to the
// requests waiting on them: one LISTEN connection per API process, however
// many clients long-poll or stream, so waiting clients hold no database
// connection.
package hub

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/notify"
)

// Channel is the notification channel the jobs table's trigger sends the
// ids of changed jobs on (notify.JobsChanged).
const Channel = notify.JobsChanged

// Hub delivers "job changed" signals to subscribers.
type Hub struct {
	listener *notify.Listener

	mu   sync.Mutex
	subs map[uuid.UUID]map[*sub]struct{}

	// recent remembers when each job was last notified changed, for
	// Remember's window (off while it is 0).
	recent recentChanges

	// others are the wake-ups of the other channels the hub listens on
	// for the process (Also): one LISTEN connection per API process.
	others sync.Map // channel -> func()
}

type sub struct{ ch chan struct{} }

// New listens on the database at url. The listener connects (and
// reconnects) in the background, and after every reconnect it wakes every
// subscriber, since notifications may have been missed. New waits up to a
// few seconds for the first connection, so that a healthy start is ready
// (/readyz) at once.
func New(url string, log *slog.Logger) (*Hub, error) {
	h := &Hub{subs: map[uuid.UUID]map[*sub]struct{}{}}
	h.listener = notify.Listen(url, []string{Channel}, log, h.changed, h.wakeAll)
	h.listener.WaitUp(firstConnectWait)
	return h, nil
}

// firstConnectWait bounds how long New waits for the first connection.
const firstConnectWait = 5 * time.Second

// changed wakes the subscribers of every job a notification names (one
// notification names every job an UPDATE changed, comma-separated).
func (h *Hub) changed(channel, payload string) {
	if channel != Channel {
		if wake, ok := h.others.Load(channel); ok {
			wake.(func())()
		}
		return
	}
	now := time.Now()
	for _, field := range strings.Split(payload, ",") {
		if id, err := uuid.Parse(field); err == nil {
			h.recent.note(id, now)
			h.wake(id)
		}
	}
}

// Remember makes the hub keep, for d, when each job was last notified
// changed (ChangedAt). Read replicas use it: a replica that was not yet
// fresh when a job changed would show the job as it was, so a read of a job
// changed in the last JOBS_READ_MAX_LAG goes to a replica fresh since the
// change, or to the primary. Call it before the hub is in use.
func (h *Hub) Remember(d time.Duration) { h.recent.setWindow(d) }

// ChangedAt is when a notification last said the job changed, if within
// the Remember window; zero otherwise, and while the listener is down
// (changes made then are not heard of).
func (h *Hub) ChangedAt(id uuid.UUID) time.Time { return h.recent.at(id) }

// recentChanges maps job ids to the time of their last change notification,
// forgetting those older than window (a queue in time order finds them).
type recentChanges struct {
	// on is set once a window is: until then (no read replicas) a read
	// takes no lock.
	on     atomic.Bool
	mu     sync.RWMutex // readers are polls; writers, notifications
	window time.Duration
	last   map[uuid.UUID]time.Time
	order  []noted // in time order; order[head:] are remembered
	head   int
}

type noted struct {
	id uuid.UUID
	at time.Time
}

func (r *recentChanges) setWindow(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.window = d
	if r.last == nil {
		r.last = map[uuid.UUID]time.Time{}
	}
	r.on.Store(d > 0)
}

func (r *recentChanges) note(id uuid.UUID, now time.Time) {
	if !r.on.Load() { // no read replicas: nothing to remember, no lock
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.window <= 0 {
		return
	}
	r.last[id] = now
	r.order = append(r.order, noted{id, now})
	for r.head < len(r.order) && now.Sub(r.order[r.head].at) > r.window {
		if old := r.order[r.head]; r.last[old.id].Equal(old.at) {
			delete(r.last, old.id)
		}
		r.head++
	}
	// Move the live part to the front once the forgotten part is the
	// larger: each entry is copied O(1) times on average.
	if r.head > 64 && 2*r.head > len(r.order) {
		n := copy(r.order, r.order[r.head:])
		clear(r.order[n:])
		r.order, r.head = r.order[:n], 0
	}
}

func (r *recentChanges) at(id uuid.UUID) time.Time {
	if !r.on.Load() {
		return time.Time{}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	at := r.last[id]
	if !at.IsZero() && time.Since(at) > r.window {
		return time.Time{}
	}
	return at
}

// Also listens on channel too, on the hub's connection: every notification
// on it calls wake, and so does every reconnect (notifications may have
// been missed meanwhile). wake must not block.
func (h *Hub) Also(channel string, wake func()) error {
	h.others.Store(channel, wake)
	return h.listener.Listen(channel)
}

// Subscribe returns a channel that receives a value (coalesced) whenever the
// job may have changed, and a function that ends the subscription.
func (h *Hub) Subscribe(id uuid.UUID) (<-chan struct{}, func()) {
	s := &sub{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	set, ok := h.subs[id]
	if !ok {
		set = map[*sub]struct{}{}
		h.subs[id] = set
	}
	set[s] = struct{}{}
	h.mu.Unlock()
	return s.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(set, s)
		if len(set) == 0 && h.subs[id] != nil && len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
	}
}

// Up reports whether the LISTEN connection is connected now, for metrics
// (jobsd_listener_up). While it is not, waiters hear of changes only when
// it reconnects (every waiter is woken then) or their own timers fire.
func (h *Hub) Up() bool { return h.listener.Up() }

// Waiting is the number of subscriptions, for metrics and tests.
func (h *Hub) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.subs {
		n += len(set)
	}
	return n
}

func (h *Hub) wake(id uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[id] {
		signal(s.ch)
	}
}

func (h *Hub) wakeAll() {
	h.others.Range(func(_, wake any) bool {
		wake.(func())()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.subs {
		for s := range set {
			signal(s.ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Close stops listening.
func (h *Hub) Close() error { return h.listener.Close() }
