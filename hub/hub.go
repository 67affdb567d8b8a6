// Package hub fans PostgreSQL notifications of job changes out to the
// requests waiting on them: one LISTEN connection per API process, however
// many clients long-poll or stream, so waiting clients hold no database
// connection.
package hub

import (
	"log/slog"
	"strings"
	"sync"
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
func (h *Hub) changed(_, payload string) {
	for _, field := range strings.Split(payload, ",") {
		if id, err := uuid.Parse(field); err == nil {
			h.wake(id)
		}
	}
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
