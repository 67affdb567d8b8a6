package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/jobsd/jobsd/store"
)

// TestWindowUsers: the choice between a full claim and a window claim. A
// window claim follows only a recent full claim that served several users,
// has room for one job of each, and stops after a second, after a window
// claim that came back short or failed, and under a per-user cap.
func TestWindowUsers(t *testing.T) {
	claimed := func(users ...string) []store.Claimed {
		var out []store.Claimed
		for _, u := range users {
			out = append(out, store.Claimed{UserID: u})
		}
		return out
	}
	w := &Worker{}
	if got := w.windowUsers(10); got != 0 {
		t.Fatalf("before any claim: window of %d users, want a full claim", got)
	}
	w.claimedUsers(store.ClaimRequest{N: 4}, claimed("alice"), nil)
	if got := w.windowUsers(10); got != 0 {
		t.Errorf("after a full claim that served one user: window of %d users, want a full claim", got)
	}
	w.claimedUsers(store.ClaimRequest{N: 4}, claimed("alice", "bob", "alice", "carol"), nil)
	if got := w.windowUsers(10); got != 3 {
		t.Errorf("after a full claim that served 3 users: window of %d users, want 3", got)
	}
	if got := w.windowUsers(2); got != 0 {
		t.Errorf("2 free slots among 3 users: window of %d users, want a full claim", got)
	}

	w.claimedUsers(store.ClaimRequest{N: 10, Users: 3}, claimed("alice", "bob", "carol", "alice", "bob", "carol", "alice", "bob", "carol", "alice"), nil)
	if got := w.windowUsers(10); got != 3 {
		t.Errorf("after a full window claim: window of %d users, want 3", got)
	}
	w.claimedUsers(store.ClaimRequest{N: 10, Users: 3}, claimed("alice", "bob", "carol"), nil)
	if got := w.windowUsers(10); got != 0 {
		t.Errorf("after a short window claim: window of %d users, want a full claim", got)
	}

	w.claimedUsers(store.ClaimRequest{N: 4}, claimed("alice", "bob"), nil)
	w.claimedUsers(store.ClaimRequest{N: 10, Users: 2}, nil, errors.New("connection refused"))
	if got := w.windowUsers(10); got != 0 {
		t.Errorf("after a failed window claim: window of %d users, want a full claim", got)
	}

	w.claimedUsers(store.ClaimRequest{N: 4}, claimed("alice", "bob"), nil)
	w.fullClaimed = time.Now().Add(-fullClaimEvery - time.Millisecond)
	if got := w.windowUsers(10); got != 0 {
		t.Errorf("a second after the last full claim: window of %d users, want a full claim", got)
	}

	w.claimedUsers(store.ClaimRequest{N: 4}, claimed("alice", "bob"), nil)
	w.cfg.UserConcurrency = 2
	if got := w.windowUsers(10); got != 0 {
		t.Errorf("under a per-user cap: window of %d users, want a full claim", got)
	}
}
