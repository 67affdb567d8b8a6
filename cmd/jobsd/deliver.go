package main

import (
	"context"
	"flag"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/notify"
)

// defaultDeliverNice is JOBS_WEBHOOK_NICE's default: how much lower than
// the priority it starts with jobsd deliver runs.
const defaultDeliverNice = 10

// maxNice is the lowest CPU priority on Linux (and most Unixes).
const maxNice = 19

// runDeliver runs only the webhook delivery loop, with serve's settings and
// the same code as serve's in-process loop (startWebhookDelivery), at a
// lower CPU priority (JOBS_WEBHOOK_NICE): on cores that the worker or
// PostgreSQL also use, the scheduler then lets delivery trail a burn-down
// and catch up after it, instead of taking the worker's CPU (and, as in
// serve, the loop holds back its database work while the queue has a
// backlog: JOBS_WEBHOOK_YIELD_BACKLOG, JOBS_WEBHOOK_YIELD_MAX). SIGTERM or
// SIGINT stops claiming and waits for the attempts in flight.
func runDeliver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deliver", flag.ContinueOnError)
	db, log, err := startProcess(fs, args)
	if err != nil {
		return err
	}
	if err := db.requireDirect(); err != nil {
		return err
	}
	settings, err := readWebhookSettings()
	if err != nil {
		return err
	}
	// JOBS_WEBHOOK_DELIVERY switches the APIs' loops; this process is the
	// loop, whatever an environment shared with the APIs says.
	settings.deliver = true
	nice, err := envInt("JOBS_WEBHOOK_NICE", defaultDeliverNice)
	if err != nil {
		return err
	}
	if nice > maxNice {
		return usagef("JOBS_WEBHOOK_NICE=%d must be between 0 and %d", nice, maxNice)
	}
	// Before the pool's and the listener's threads start: the threads the
	// Go runtime makes later inherit the priority of the one making them.
	lowerPriority(nice, log)
	st, err := db.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	wakes := listenDeliveries(db.direct, log)
	defer func() { _ = wakes.Close() }() // at exit: nothing to do about a failed close
	var reg *prometheus.Registry
	if metricsAddr() != "" {
		reg = newProcessMetrics(st, log)
	}
	stopDelivery := startWebhookDelivery(ctx, st, wakes, settings, reg, log)
	defer stopDelivery()
	stopMetrics, err := startMetrics(metricsAddr(), reg, storeReady(st), log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	log.Info("webhook delivery ready")
	<-ctx.Done()
	log.Info("shutting down: finishing webhook attempts in flight")
	return nil
}

// lowerPriority lowers this process's CPU priority by nice (at most to
// maxNice), logging once when it cannot; 0 leaves it as it is.
func lowerPriority(nice int, log *slog.Logger) {
	if nice == 0 {
		return
	}
	from, to, err := reniceThreads(nice)
	if err != nil {
		log.Warn("webhooks: could not lower the CPU priority (JOBS_WEBHOOK_NICE); delivering at the priority this process started with", "err", err)
		return
	}
	log.Info("webhooks: CPU priority lowered", "nice_from", from, "nice", to)
}

// deliveriesListener is jobsd deliver's LISTEN connection, on
// webhook_deliveries alone: an API's hub also hears of every job change,
// hundreds of notifications a second in a burn-down, which a deliverer has
// no use for.
type deliveriesListener struct {
	*notify.Listener
	wake atomic.Pointer[func()]
}

// firstListenWait bounds how long jobsd deliver waits for its listener's
// first connection before it goes on (the loop's timer finds work
// meanwhile), as the API's hub does.
const firstListenWait = 5 * time.Second

func listenDeliveries(url string, log *slog.Logger) *deliveriesListener {
	l := &deliveriesListener{}
	wake := func() {
		if w := l.wake.Load(); w != nil {
			(*w)()
		}
	}
	l.Listener = notify.Listen(url, nil, log, func(string, string) { wake() }, wake)
	l.WaitUp(firstListenWait)
	return l
}

// Also listens on channel, calling wake on each of its notifications and
// after each reconnect (wakeSource).
func (l *deliveriesListener) Also(channel string, wake func()) error {
	l.wake.Store(&wake)
	return l.Listen(channel)
}
