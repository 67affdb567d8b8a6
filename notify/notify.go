// Package notify is jobsd's one listener for PostgreSQL notifications: a
// LISTEN connection that reconnects by itself and hands every notification
// to a handler. The API's hub listens on JobsChanged; the worker on
// JobsInserted and JobsCancelled; the webhook delivery loop on
// WebhookDeliveries. The channel names are defined here once;
// the SQL that notifies (migrations' triggers, the store's cancel) spells
// the same names.
package notify

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// The channels jobsd notifies on.
const (
	// JobsChanged carries the ids of the jobs an UPDATE changed,
	// comma-separated, in chunks of 200 (the jobs_changed trigger).
	JobsChanged = "jobs_changed"
	// JobsInserted has an empty payload, one per inserting statement (the
	// jobs_inserted trigger): a worker's cue to claim.
	JobsInserted = "jobs_inserted"
	// JobsCancelled carries the id of a job just cancelled (store's cancel):
	// the worker running it stops its handler.
	JobsCancelled = "jobs_cancelled"
	// WebhookDeliveries has an empty payload, one per statement that
	// wrote a webhook_outbox row (the webhook_outbox_written trigger) or
	// queued a delivery due now (webhook_deliveries_queued): the delivery
	// loop's cue to claim.
	WebhookDeliveries = "webhook_deliveries"
)

// Reconnection backoff of the listening connection.
const (
	minReconnect = 100 * time.Millisecond
	maxReconnect = 5 * time.Second
)

// Listener is one listening connection.
type Listener struct {
	l         *pq.Listener
	up        atomic.Bool
	connected chan struct{} // closed at the first connection
}

// Listen connects to the database at url in the background and LISTENs on
// channels. handle receives every notification, in order, on one
// goroutine; reconnected is called (on that goroutine) after each
// reconnection, since notifications sent meanwhile are lost. A failure to
// connect is not fatal: the listener keeps trying and LISTENs again once
// connected.
func Listen(url string, channels []string, log *slog.Logger, handle func(channel, payload string), reconnected func()) *Listener {
	ln := &Listener{connected: make(chan struct{})}
	var once sync.Once
	ln.l = pq.NewListener(url, minReconnect, maxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected:
			ln.up.Store(true)
			once.Do(func() { close(ln.connected) })
		case pq.ListenerEventConnectionAttemptFailed, pq.ListenerEventDisconnected:
			ln.up.Store(false)
			log.Warn("notification listener lost its connection", "channels", channels, "err", err)
		case pq.ListenerEventReconnected:
			ln.up.Store(true)
			log.Info("notification listener reconnected", "channels", channels)
		}
	})
	for _, ch := range channels {
		if err := ln.l.Listen(ch); err != nil {
			log.Warn("listen failed; retried when the connection comes back", "channel", ch, "err", err)
		}
	}
	go func() {
		for n := range ln.l.Notify {
			if n == nil { // reconnected: anything may have happened
				reconnected()
				continue
			}
			handle(n.Channel, n.Extra)
		}
	}()
	return ln
}

// Listen adds channel to those the listener listens on (again after every
// reconnect); its notifications go to the listener's handle.
func (ln *Listener) Listen(channel string) error { return ln.l.Listen(channel) }

// WaitUp waits until the first connection is made, or d passes, and
// reports whether the listener is connected.
func (ln *Listener) WaitUp(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ln.connected:
	case <-t.C:
	}
	return ln.Up()
}

// Up reports whether the listening connection is connected now.
func (ln *Listener) Up() bool { return ln.up.Load() }

// Close stops listening.
func (ln *Listener) Close() error { return ln.l.Close() }
