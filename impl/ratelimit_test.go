package impl

import (
	"context"
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUserLimiters(t *testing.T) {
	l := newUserLimiters(RateLimit{PerSecond: 2, Burst: 3})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := l.allow("alice", 1, now); !ok {
			t.Fatalf("request %d within the burst was refused", i+1)
		}
	}
	ok, wait := l.allow("alice", 1, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok %v wait %v; want refused with a wait of at most 0.5 s", ok, wait)
	}
	if ok, _ := l.allow("bob", 1, now); !ok {
		t.Error("another user's bucket was shared")
	}
	if ok, _ := l.allow("alice", 1, now.Add(600*time.Millisecond)); !ok {
		t.Error("a token was not refilled after 0.6 s at 2/s")
	}
	if newUserLimiters(RateLimit{}) != nil {
		t.Error("a zero limit is not off")
	}
	l.allow("carol", 1, now)
	l.allow("dave", 1, now.Add(time.Hour)) // sweeps users idle past the refill time
	if _, ok := l.users["carol"]; ok {
		t.Error("an idle user's bucket was kept")
	}
}

// TestShare: each of n processes enforces rate ÷ n and burst ÷ n, rounded
// down so that the parts never exceed the whole, and never below 1.
func TestShare(t *testing.T) {
	tests := []struct {
		name  string
		limit RateLimit
		n     int
		want  RateLimit
	}{
		{"one process", RateLimit{50, 100}, 1, RateLimit{50, 100}},
		{"two", RateLimit{50, 100}, 2, RateLimit{25, 50}},
		{"three, burst rounded down", RateLimit{5, 20}, 3, RateLimit{5.0 / 3, 6}},
		{"more processes than burst", RateLimit{5, 20}, 40, RateLimit{0.125, 1}},
		{"n unknown (0) counts as 1", RateLimit{5, 20}, 0, RateLimit{5, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.limit.share(tt.n)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	for _, c := range []struct{ total, n, want int }{{20, 1, 20}, {20, 3, 6}, {20, 20, 1}, {20, 50, 1}, {1, 2, 1}, {20, -1, 20}} {
		if got := shareOf(c.total, c.n); got != c.want {
			t.Errorf("shareOf(%d, %d) = %d, want %d", c.total, c.n, got, c.want)
		}
	}
}

// burstOf counts the requests one user gets at one instant.
func burstOf(l *userLimiters, user string, n int, now time.Time) int {
	got := 0
	for range 1000 {
		if ok, _ := l.allow(user, n, now); !ok {
			break
		}
		got++
	}
	return got
}

// TestUserLimitersResize: when the number of processes changes, every
// bucket, old and new, gets the new share.
func TestUserLimitersResize(t *testing.T) {
	l := newUserLimiters(RateLimit{PerSecond: 4, Burst: 12})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := burstOf(l, "alice", 3, now); got != 4 {
		t.Errorf("burst with 3 processes: %d, want 12 ÷ 3 = 4", got)
	}
	// A second later, at 4/s ÷ 3, alice has 1.33 tokens: one request.
	if got := burstOf(l, "alice", 3, now.Add(time.Second)); got != 1 {
		t.Errorf("after 1 s with 3 processes: %d, want 1", got)
	}
	// Now one process (at the same instant: 0.33 tokens left): alice's
	// bucket refills at 4/s up to 12.
	now = now.Add(time.Second)
	if got := burstOf(l, "alice", 1, now); got != 0 {
		t.Errorf("at the change: %d, want 0", got)
	}
	if got := burstOf(l, "alice", 1, now.Add(time.Second)); got != 4 {
		t.Errorf("after 1 s alone: %d, want 4", got)
	}
	if got := burstOf(l, "bob", 1, now); got != 12 {
		t.Errorf("a new user's burst alone: %d, want 12", got)
	}
	if got := burstOf(l, "carol", 2, now); got != 6 {
		t.Errorf("a new user's burst with 2 processes: %d, want 6", got)
	}
	if got := burstOf(l, "bob", 2, now.Add(time.Hour/2)); got != 6 {
		t.Errorf("bob's refilled bucket with 2 processes: %d, want 6 (clamped to the new burst)", got)
	}
}

// TestWaiterSlots: when the waiters table cannot be used, a user's waiters
// in one process are capped at its share of the cap; a refused one holds
// nothing.
func TestWaiterSlots(t *testing.T) {
	w := newWaiterSlots(5)
	for i := range 2 {
		if !w.acquireShare("alice", 2) {
			t.Fatalf("waiter %d of 5 ÷ 2 = 2 refused", i+1)
		}
	}
	if w.acquireShare("alice", 2) {
		t.Fatal("a third waiter was accepted; the share is 2")
	}
	if !w.acquireShare("bob", 2) {
		t.Error("another user was refused")
	}
	w.release(t.Context(), waiterSlot{user: "alice"}, nil)
	if w.open["alice"] != 1 {
		t.Fatalf("alice holds %d slots after one release, want 1", w.open["alice"])
	}
	if !w.acquireShare("alice", 2) {
		t.Fatal("refused after a waiter ended")
	}
	w.release(t.Context(), waiterSlot{user: "alice"}, nil)
	w.release(t.Context(), waiterSlot{user: "alice"}, nil)
	if _, ok := w.open["alice"]; ok {
		t.Error("a user with no waiters is kept in the map")
	}
	if !w.acquireShare("alice", 10) {
		t.Error("with more processes than the cap, one waiter per process must pass")
	}
	if newWaiterSlots(0) != nil {
		t.Error("a zero cap is not off")
	}
	var off *waiterSlots
	if _, ok := off.acquire(t.Context(), "alice", nil); !ok {
		t.Error("no cap refused a waiter")
	}
	off.release(t.Context(), waiterSlot{user: "alice"}, nil)
}

// TestAddrLimiter: failures drain an address's bucket, after which it is
// refused before verification; successes give their token back; a new
// address costs no entry until it fails; IPv6 addresses share their /64.
func TestAddrLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAddrLimiter(RateLimit{PerSecond: 1, Burst: 3})
	verify := func(ip string, failed bool) bool {
		t.Helper()
		key := addrKey(ip)
		r, ok, wait := a.admit(key, now)
		if !ok {
			if wait <= 0 || wait > time.Second {
				t.Errorf("refused with a wait of %v, want (0, 1 s]", wait)
			}
			return false
		}
		a.done(key, r, failed, now)
		return true
	}
	if !verify("198.51.100.7", false) || len(a.addrs) != 0 {
		t.Fatalf("a valid token from a new address: %d entries, want 0", len(a.addrs))
	}
	for i := range 3 {
		if !verify("198.51.100.7", true) {
			t.Fatalf("failure %d of a burst of 3 refused", i+1)
		}
	}
	if verify("198.51.100.7", false) {
		t.Error("an address with an empty bucket was admitted")
	}
	if !verify("198.51.100.8", false) {
		t.Error("another address was refused")
	}
	now = now.Add(time.Second)
	for i := range 3 {
		if !verify("198.51.100.7", false) {
			t.Errorf("success %d after a refill was refused: successes must give their token back", i+1)
		}
	}
	if !verify("198.51.100.7", true) || verify("198.51.100.7", true) {
		t.Error("one refilled token should admit exactly one failure")
	}

	for i := range 3 {
		verify("2001:db8:1:2::"+string(rune('a'+i)), true)
	}
	if verify("2001:db8:1:2:ffff::1", false) {
		t.Error("an address in a drained IPv6 /64 was admitted")
	}
	if !verify("2001:db8:1:3::1", false) {
		t.Error("another /64 was refused")
	}
	if addrKey("::ffff:198.51.100.7") != addrKey("198.51.100.7") {
		t.Error("an IPv4-mapped address is not its IPv4 address")
	}
}

// TestAddrLimiterBounded: a flood of failures from ever new addresses keeps
// at most max entries, and entries idle past the refill time go.
func TestAddrLimiterBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAddrLimiter(RateLimit{PerSecond: 20, Burst: 40})
	a.max = 100
	for i := range 10_000 {
		key := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r, _, _ := a.admit(key, now)
		a.done(key, r, true, now)
		if len(a.addrs) > a.max {
			t.Fatalf("%d entries after %d addresses, max %d", len(a.addrs), i+1, a.max)
		}
	}
	key := netip.MustParseAddr("192.0.2.1")
	a.done(key, nil, true, now.Add(3*time.Second)) // past the 2 s refill: a sweep
	if len(a.addrs) != 1 {
		t.Errorf("%d entries after the others refilled, want 1", len(a.addrs))
	}
}

// TestClientIP: X-Forwarded-For is believed only from a trusted peer, and
// then only up to the nearest untrusted address.
func TestClientIP(t *testing.T) {
	_, proxies, _ := net.ParseCIDR("10.0.0.0/8")
	_, proxies6, _ := net.ParseCIDR("fd00::/8")
	trusted := []*net.IPNet{proxies, proxies6}
	tests := []struct {
		name    string
		trusted []*net.IPNet
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies configured: XFF ignored", nil, "10.0.0.5:4000", []string{"203.0.113.7"}, "10.0.0.5"},
		{"trusted peer", trusted, "10.0.0.5:4000", []string{"203.0.113.7"}, "203.0.113.7"},
		{"untrusted peer: its XFF ignored", trusted, "198.51.100.9:4000", []string{"203.0.113.7"}, "198.51.100.9"},
		{"trusted peer, no XFF", trusted, "10.0.0.5:4000", nil, "10.0.0.5"},
		{"two trusted hops", trusted, "10.0.0.5:4000", []string{"203.0.113.7, 10.1.1.1"}, "203.0.113.7"},
		{"a client's forged entry left of its own", trusted, "10.0.0.5:4000", []string{"1.2.3.4, 203.0.113.7, 10.1.1.1"}, "203.0.113.7"},
		{"forged entry that is a proxy address", trusted, "10.0.0.5:4000", []string{"10.9.9.9, 203.0.113.7"}, "203.0.113.7"},
		{"header repeated", trusted, "10.0.0.5:4000", []string{"203.0.113.7", "10.1.1.1"}, "203.0.113.7"},
		{"every hop trusted: the furthest", trusted, "10.0.0.5:4000", []string{"10.1.1.1"}, "10.1.1.1"},
		{"garbage next to the proxy: the peer", trusted, "10.0.0.5:4000", []string{"203.0.113.7, bogus"}, "10.0.0.5"},
		{"loopback is not trusted unless configured", trusted, "127.0.0.1:4000", []string{"203.0.113.7"}, "127.0.0.1"},
		{"private ranges are not trusted unless configured", trusted, "192.168.1.1:4000", []string{"203.0.113.7"}, "192.168.1.1"},
		{"IPv6 proxy", trusted, "[fd00::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/api/jobs", nil)
			req.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(tt.trusted)(req); got != tt.want {
				t.Errorf("client %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkLimiter measures each limit's own cost per request: a user's
// read bucket with 3 processes, the address check of a valid token (from an
// address with and without failures), and a waiter slot taken from this
// process's share (the fallback when the waiters table cannot be used; the
// table's open and close are store.BenchmarkWaiter).
func BenchmarkLimiter(b *testing.B) {
	now := time.Now()
	b.Run("user-rate", func(b *testing.B) {
		l := newUserLimiters(RateLimit{PerSecond: 1e9, Burst: 1e9})
		for b.Loop() {
			l.allow("alice", 3, now)
		}
	})
	a := newAddrLimiter(RateLimit{PerSecond: 20, Burst: 40})
	failed := addrKey("203.0.113.7")
	a.done(failed, nil, true, now)
	for _, c := range []struct {
		name string
		key  netip.Addr
	}{{"auth-addr-clean", addrKey("198.51.100.1")}, {"auth-addr-failed-before", failed}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, _, _ := a.admit(c.key, now)
				a.done(c.key, r, false, now)
			}
		})
	}
	b.Run("waiter-slot", func(b *testing.B) {
		w := newWaiterSlots(20)
		for b.Loop() {
			w.acquireShare("alice", 3)
			w.release(context.Background(), waiterSlot{user: "alice"}, nil)
		}
	})
}
