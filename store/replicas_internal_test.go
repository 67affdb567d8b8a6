package store

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestReplicaName: /readyz and metrics name a replica by host, port and
// database, never by its user or password.
func TestReplicaName(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		{"url", "postgres://reader:secret@db-ro-1:5432/jobs?sslmode=require", "db-ro-1:5432/jobs"},
		{"url without port", "postgresql://reader@db-ro-2/jobs", "db-ro-2/jobs"},
		{"key=value", "host=db-ro-3 port=5433 user=reader password=secret dbname=jobs", "db-ro-3:5433/jobs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replicaName(tc.url); got != tc.want {
				t.Errorf("replicaName(%q) = %q, want %q", tc.url, got, tc.want)
			}
		})
	}
}

// TestReplicaFreshness: a replica is fresh as of the newest primary reading
// at or below its replay position, in use while that is within the lag
// allowed, and picked for a job changed at a time only if it is fresh as of
// then.
func TestReplicaFreshness(t *testing.T) {
	now := time.Now()
	rs := &replicaSet{maxLag: time.Second, fallbacks: map[string]*atomic.Int64{}}
	for _, r := range fallbackReasons {
		rs.fallbacks[r] = new(atomic.Int64)
	}
	rs.samples = []walSample{{100, now.Add(-3 * time.Second)}, {200, now.Add(-2 * time.Second)}, {300, now.Add(-500 * time.Millisecond)}}
	for _, tc := range []struct {
		name     string
		replayed int64
		at       time.Time
		caughtUp bool
		ok       bool
	}{
		{"caught up", 300, now.Add(-500 * time.Millisecond), true, true},
		{"ahead of the last reading", 350, now.Add(-500 * time.Millisecond), true, true},
		{"between readings", 250, now.Add(-2 * time.Second), false, true},
		{"older than every reading", 50, time.Time{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, caughtUp, ok := rs.freshAsOf(tc.replayed)
			if !at.Equal(tc.at) || caughtUp != tc.caughtUp || ok != tc.ok {
				t.Errorf("freshAsOf(%d) = %v, %v, %v; want %v, %v, %v", tc.replayed, at, caughtUp, ok, tc.at, tc.caughtUp, tc.ok)
			}
		})
	}

	r := &replica{name: "r"}
	rs.replicas = []*replica{r}
	r.up.Store(true)
	r.freshAsOf.Store(now.Add(-500 * time.Millisecond).UnixNano())
	if rs.pick() != r {
		t.Fatal("a replica fresh 0.5 s ago (lag allowed 1 s) is not in use")
	}
	if rs.pickFresh(now.Add(-time.Second)) != r {
		t.Fatal("not picked for a job changed before it was fresh")
	}
	if rs.pickFresh(now.Add(-100*time.Millisecond)) != nil || rs.fallbacks[FallbackChanged].Load() != 1 {
		t.Fatal("picked for a job changed after it was fresh")
	}
	r.freshAsOf.Store(now.Add(-2 * time.Second).UnixNano())
	if rs.pick() != nil || rs.fallbacks[FallbackNoReplica].Load() != 1 {
		t.Fatal("a replica fresh 2 s ago (lag allowed 1 s) is in use")
	}
	r.freshAsOf.Store(now.UnixNano())
	r.setDown("unreachable")
	if rs.pick() != nil {
		t.Fatal("a replica that is down is in use")
	}
}

// TestOpenReplicaURL: a malformed replica URL is refused when the store
// opens, not found out by a replica that is never in use.
func TestOpenReplicaURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"postgres://reader@db-ro-1:5432/jobs", true},
		{"host=db-ro-1 dbname=jobs", true},
		{"postgres://reader@db-ro-1:port/jobs", false},
		{"host='db-ro-1", false},
	} {
		db, err := openReplica(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("openReplica(%q): %v, want ok %v", tc.url, err, tc.ok)
		}
		if db != nil {
			db.Close()
		}
	}
}
