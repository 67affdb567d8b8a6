package impl

import (
	"testing"
	"time"
)

func TestUserLimiters(t *testing.T) {
	l := newUserLimiters(RateLimit{PerSecond: 2, Burst: 3})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := l.allow("alice", now); !ok {
			t.Fatalf("request %d within the burst was refused", i+1)
		}
	}
	ok, wait := l.allow("alice", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok %v wait %v; want refused with a wait of at most 0.5 s", ok, wait)
	}
	if ok, _ := l.allow("bob", now); !ok {
		t.Error("another user's bucket was shared")
	}
	if ok, _ := l.allow("alice", now.Add(600*time.Millisecond)); !ok {
		t.Error("a token was not refilled after 0.6 s at 2/s")
	}
	if newUserLimiters(RateLimit{}) != nil {
		t.Error("a zero limit is not off")
	}
	l.allow("carol", now)
	l.allow("dave", now.Add(time.Hour)) // sweeps users idle past the refill time
	if _, ok := l.users["carol"]; ok {
		t.Error("an idle user's bucket was kept")
	}
}
