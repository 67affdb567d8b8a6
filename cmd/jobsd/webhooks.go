package main

import (
	"context"
	"log/slog"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/delivery"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/notify"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/webhook"
)

// webhookSettings are the JOBS_WEBHOOK_* settings (docs/webhooks.md).
type webhookSettings struct {
	deliver      bool
	allowPrivate bool
	sealer       *webhook.Sealer
	loop         delivery.Config
}

func readWebhookSettings() (webhookSettings, error) {
	var s webhookSettings
	var err error
	if s.deliver, err = envOnOff("JOBS_WEBHOOK_DELIVERY", true); err != nil {
		return s, err
	}
	if s.allowPrivate, err = envOnOff("JOBS_WEBHOOK_ALLOW_PRIVATE", false); err != nil {
		return s, err
	}
	if s.sealer, err = webhook.NewSealer(os.Getenv("JOBS_WEBHOOK_KEY")); err != nil {
		return s, usagef("JOBS_WEBHOOK_KEY: %v", err)
	}
	c := &s.loop
	if c.Timeout, err = envDuration("JOBS_WEBHOOK_TIMEOUT", webhook.DefaultTimeout); err != nil {
		return s, err
	}
	if c.Concurrency, err = envInt("JOBS_WEBHOOK_CONCURRENCY", delivery.DefaultConcurrency); err != nil {
		return s, err
	}
	if c.PerEndpoint, err = envInt("JOBS_WEBHOOK_PER_ENDPOINT", delivery.DefaultPerEndpoint); err != nil {
		return s, err
	}
	if c.Concurrency < 1 || c.PerEndpoint < 1 {
		return s, usagef("JOBS_WEBHOOK_CONCURRENCY and JOBS_WEBHOOK_PER_ENDPOINT must be at least 1")
	}
	if c.Schedule, err = delivery.ParseSchedule(envOr("JOBS_WEBHOOK_RETRY_SCHEDULE", delivery.DefaultScheduleText)); err != nil {
		return s, usagef("JOBS_WEBHOOK_RETRY_SCHEDULE: %v", err)
	}
	if c.Disable.After, err = envDuration("JOBS_WEBHOOK_DISABLE_AFTER", delivery.DefaultDisableAfter); err != nil {
		return s, err
	}
	if c.Disable.MinFailures, err = envInt("JOBS_WEBHOOK_DISABLE_MIN_FAILURES", delivery.DefaultDisableMinFailures); err != nil {
		return s, err
	}
	if c.MaxResultBytes, err = envInt("JOBS_WEBHOOK_MAX_RESULT_BYTES", delivery.DefaultMaxResultBytes); err != nil {
		return s, err
	}
	if c.Poll, err = envDuration("JOBS_WEBHOOK_POLL", delivery.DefaultPoll); err != nil {
		return s, err
	}
	if c.YieldBacklog, err = envInt("JOBS_WEBHOOK_YIELD_BACKLOG", delivery.DefaultYieldBacklog); err != nil {
		return s, err
	}
	if c.YieldMax, err = envDuration("JOBS_WEBHOOK_YIELD_MAX", delivery.DefaultYieldMax); err != nil {
		return s, err
	}
	if c.YieldMax <= 0 {
		return s, usagef("JOBS_WEBHOOK_YIELD_MAX=%v must be above 0 (JOBS_WEBHOOK_YIELD_BACKLOG=0 turns yielding off)", c.YieldMax)
	}
	return s, nil
}

// envOnOff reads a boolean setting: true/false, on/off, 1/0.
func envOnOff(name string, def bool) (bool, error) {
	v := os.Getenv(name)
	switch v {
	case "":
		return def, nil
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, usagef("%s=%q is not true or false", name, v)
	}
	return b, nil
}

// apiWebhooks is the webhook API's part of impl.Config.
func (s webhookSettings) api() impl.WebhookConfig {
	return impl.WebhookConfig{Sealer: s.sealer, AllowPrivate: s.allowPrivate}
}

// wakeSource is where the delivery loop hears of new work: an API's hub
// (*hub.Hub, whose one LISTEN connection also carries the job changes), or
// jobsd deliver's listener on webhook_deliveries alone.
type wakeSource interface {
	// Also calls wake on every notification on channel, and after every
	// reconnect; wake must not block.
	Also(channel string, wake func()) error
	// Up reports whether the LISTEN connection is connected now.
	Up() bool
}

// startWebhookDelivery runs the delivery loop in this process unless
// JOBS_WEBHOOK_DELIVERY=off, woken by LISTEN webhook_deliveries on wakes's
// connection (one per process, direct, never through a pooler); stop
// ends it and waits for the attempts in flight.
func startWebhookDelivery(ctx context.Context, st *store.Store, wakes wakeSource, s webhookSettings, reg *prometheus.Registry, log *slog.Logger) (stop func()) {
	if !s.deliver {
		return func() {}
	}
	if !s.sealer.Encrypting() {
		log.Warn("webhooks: JOBS_WEBHOOK_KEY is not set: signing secrets are stored unencrypted")
	}
	if s.allowPrivate {
		log.Warn("webhooks: JOBS_WEBHOOK_ALLOW_PRIVATE is on: endpoints may be http and private addresses")
	}
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if err := wakes.Also(notify.WebhookDeliveries, poke); err != nil {
		// pq listens again once its connection is back; meanwhile the
		// loop's own timer finds what is due.
		log.Warn("webhooks: listen failed; retried when the connection comes back", "err", err)
	}
	cfg := s.loop
	cfg.Store, cfg.Sealer, cfg.AllowPrivate, cfg.EncodeJob, cfg.Wake, cfg.Log = st, s.sealer, s.allowPrivate, impl.WebhookJSON, wake, log
	// cfg.Client nil: delivery's default client, from the settings above.
	if reg != nil {
		cfg.Metrics = metrics.NewWebhooks(reg)
		metrics.RegisterListener(reg, notify.WebhookDeliveries, wakes.Up)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { delivery.Run(ctx, cfg); close(done) }()
	return func() { cancel(); <-done }
}
