package eventually

import (
	"errors"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	calls := 0
	err := Wait(time.Minute, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Wait = %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := Wait(0, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Wait past its deadline = %v, want the last error", err)
	}
}

func TestTrueHolds(t *testing.T) {
	n := 0
	True(t, time.Minute, "n reaches 2", func() bool { n++; return n >= 2 })
	if n != 2 {
		t.Fatalf("cond called %d times, want 2", n)
	}
}

func TestWaitEvery(t *testing.T) {
	calls := 0
	start := time.Now()
	err := WaitEvery(time.Minute, 30*time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitEvery = %v after %d calls, want nil after 3", err, calls)
	}
	// A check every 30 ms: the third is no earlier than 60 ms after the first.
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("3 checks every 30 ms took %v", took)
	}
}
