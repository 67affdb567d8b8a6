package impl

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedAddrs bounds the per-address buckets of failed authentications
// (about 200 bytes each): a flood from ever new addresses evicts old entries
// instead of growing memory.
const maxTrackedAddrs = 1 << 16

// addrLimiter limits failed authentications per client address, so that a
// flood of bad tokens costs at most its rate in signature checks. Only
// addresses that failed have a bucket: a valid token from a new address
// costs a map lookup. An address's bucket is forgotten once it would be
// full again.
type addrLimiter struct {
	limit RateLimit
	idle  time.Duration // how long an empty bucket takes to refill
	max   int
	mu    sync.Mutex
	addrs map[netip.Addr]*userBucket
	swept time.Time
}

// newAddrLimiter returns nil (no limit) for a zero rate.
func newAddrLimiter(l RateLimit) *addrLimiter {
	if l.PerSecond <= 0 {
		return nil
	}
	l = l.withBurst()
	idle := time.Duration(float64(l.Burst) / l.PerSecond * float64(time.Second))
	return &addrLimiter{limit: l, idle: idle, max: maxTrackedAddrs, addrs: map[netip.Addr]*userBucket{}}
}

// addrKey is the bucket of a client address: an IPv4 address, or the /64
// of an IPv6 one, which one client usually holds whole.
func addrKey(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{} // unknown addresses share one bucket
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// admit runs before a token is verified: it reserves one of the address's
// tokens (which a success gives back and a failure keeps), or says how long
// until there is one. Reserving, not peeking, keeps concurrent bad tokens
// from the same address within the burst.
func (a *addrLimiter) admit(key netip.Addr, now time.Time) (r *rate.Reservation, ok bool, wait time.Duration) {
	if a == nil {
		return nil, true, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b, found := a.addrs[key]
	if !found {
		return nil, true, 0 // a full bucket
	}
	r = b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, false, d
	}
	b.seen = now
	return r, true, 0
}

// done settles an admitted verification: a success gives the token back, a
// failure keeps it (taking one from a new bucket when there was none). now
// must be admit's: the limiter gives a token back only when the
// reservation is cancelled no later than the time it was made for.
func (a *addrLimiter) done(key netip.Addr, r *rate.Reservation, failed bool, now time.Time) {
	if a == nil {
		return
	}
	if !failed {
		if r != nil {
			r.CancelAt(now)
		}
		return
	}
	if r != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b, found := a.addrs[key]
	if !found {
		a.makeRoom(now)
		b = &userBucket{lim: rate.NewLimiter(rate.Limit(a.limit.PerSecond), a.limit.Burst)}
		a.addrs[key] = b
	}
	b.seen = now
	b.lim.AllowN(now, 1)
}

// makeRoom forgets buckets that have refilled, at most once per refill time
// unless the map is full; when it is still full, it drops an arbitrary entry
// (Go's map order is random), so a flood from many addresses stays bounded.
func (a *addrLimiter) makeRoom(now time.Time) {
	full := len(a.addrs) >= a.max
	if full || now.Sub(a.swept) >= a.idle {
		a.swept = now
		for k, b := range a.addrs {
			if now.Sub(b.seen) >= a.idle {
				delete(a.addrs, k)
			}
		}
	}
	for k := range a.addrs {
		if len(a.addrs) < a.max {
			break
		}
		delete(a.addrs, k)
	}
}
