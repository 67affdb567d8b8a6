package worker

import (
	"log/slog"
	"time"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
)

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
