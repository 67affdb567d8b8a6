package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobsd/jobsd/gen"
)

// Defaults of Wait.
const (
	// DefaultLongPoll is how long each long-poll request asks the server to
	// hold an unchanged job (the API's maximum).
	DefaultLongPoll = 30 * time.Second
	// DefaultPollInterval is the pause between plain polls when the server
	// sends no Retry-After (the API documents 3 seconds).
	DefaultPollInterval = 3 * time.Second
	// maxTransient is how many transient failures in a row Wait rides out.
	maxTransient = 5
)

// WaitOption configures Client.Wait.
type WaitOption func(*waitConfig)

type waitConfig struct {
	progress func(gen.Job)
	longPoll time.Duration
	interval time.Duration
}

// WithProgress calls fn with the job first and then on every change seen
// (status, attempts, ...), including the final one. fn runs on Wait's
// goroutine; it should return quickly.
func WithProgress(fn func(gen.Job)) WaitOption { return func(c *waitConfig) { c.progress = fn } }

// WithLongPoll sets how long each long-poll request may be held (whole
// seconds, at most 30); 0 or less turns long polling off, so Wait polls
// plainly from the start.
func WithLongPoll(d time.Duration) WaitOption {
	return func(c *waitConfig) { c.longPoll = min(d, DefaultLongPoll) }
}

// WithPollInterval sets the pause between plain polls when the server sends
// no Retry-After (default DefaultPollInterval). The server's Retry-After wins.
func WithPollInterval(d time.Duration) WaitOption { return func(c *waitConfig) { c.interval = d } }

// Wait follows the job until it is COMPLETED or FAILED and returns it. For a
// FAILED job it returns the job and a *JobFailedError.
//
// It long-polls (see the package documentation) and falls back to
// conditional polls spaced by the server's Retry-After when the server
// turns out not to hold requests. Up to five transient failures in a row
// (network errors, 429, 502, 503, 504) are retried after a poll interval.
// When ctx ends, Wait returns at once with the last job seen (nil if none)
// and an error wrapping ctx.Err().
func (c *Client) Wait(ctx context.Context, id string, opts ...WaitOption) (*gen.Job, error) {
	cfg := waitConfig{longPoll: DefaultLongPoll, interval: DefaultPollInterval}
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := ParseID(id); err != nil {
		return nil, err
	}
	waitSeconds := int(cfg.longPoll / time.Second)
	longPoll := waitSeconds > 0

	var (
		last       *gen.Job
		etag       string
		retryAfter int
		transient  int
	)
	for {
		wait := 0
		if longPoll && etag != "" {
			wait = waitSeconds
		}
		start := time.Now()
		p, err := c.poll(ctx, id, etag, wait)
		if err != nil {
			if ctx.Err() != nil {
				return last, fmt.Errorf("client: waiting for job %s: %w", id, ctx.Err())
			}
			var apiErr *APIError
			if (errors.As(err, &apiErr) && !IsTemporary(err)) || transient >= maxTransient {
				return last, err
			}
			transient++
			if err := sleep(ctx, cfg.interval); err != nil {
				return last, fmt.Errorf("client: waiting for job %s: %w", id, err)
			}
			continue
		}
		transient = 0
		retryAfter = p.retryAfter
		switch {
		case p.job != nil:
			changed := last == nil || p.etag != etag || (p.etag == "" && !sameVersion(last, p.job))
			last, etag = p.job, p.etag
			if changed && cfg.progress != nil {
				cfg.progress(*last)
			}
			switch last.Status {
			case gen.COMPLETED:
				return last, nil
			case gen.FAILED:
				return last, &JobFailedError{Job: last, Message: deref(last.Error)}
			}
			if etag == "" {
				longPoll = false // nothing to long-poll against
			}
		case wait > 0 && time.Since(start) < time.Duration(wait)*time.Second/2:
			// An unchanged job answered long before the wait was up: the
			// server ignores waitSeconds. Poll plainly from now on.
			longPoll = false
		}
		if longPoll {
			continue
		}
		d := cfg.interval
		if retryAfter > 0 {
			d = time.Duration(retryAfter) * time.Second
		}
		if err := sleep(ctx, d); err != nil {
			return last, fmt.Errorf("client: waiting for job %s: %w", id, err)
		}
	}
}

// sameVersion compares what changes between versions of a job, for servers
// without ETags.
func sameVersion(a, b *gen.Job) bool {
	return a.Status == b.Status && a.Attempts == b.Attempts && a.UpdatedAt.Equal(b.UpdatedAt.Time)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
