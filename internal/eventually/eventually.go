// Package eventually lets a test wait for a condition with a deadline instead
// of sleeping for a guessed time: the wait ends as soon as the condition
// holds, and a condition that never holds fails the test with what it waited
// for, never a hang.
package eventually

import (
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 10 * time.Millisecond

// True waits until cond returns true, checking it at once and then every
// Interval, and fails the test if it still does not after within. what
// describes the condition for the failure message ("the listener is ready").
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	NoError(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// NoError waits until f returns nil, as [True] does, and reports f's last
// error when it never does.
func NoError(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	if err := Wait(within, f); err != nil {
		t.Fatalf("waited %s for %s: %v", within, what, err)
	}
}

// Wait calls f until it returns nil or within has passed, and returns f's
// last error; for waits outside a test's goroutine, where t.Fatal must not
// be called.
func Wait(within time.Duration, f func() error) error {
	return WaitEvery(within, Interval, f)
}

// WaitEvery is [Wait] checking every interval instead of every Interval:
// for a check that costs the system it checks, such as a request to a
// deployment under a rate limit.
func WaitEvery(within, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

type notYet struct{}

func (notYet) Error() string { return "the condition never held" }

var errNotYet error = notYet{}
