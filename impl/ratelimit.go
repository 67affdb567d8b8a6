package impl

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
)

// Limits across replicas. The per-user limits are deployment-wide. The
// request rates are enforced with no shared state per request: each of the
// N live API processes (Replicas) enforces its share, the limit ÷ N, so that
// a load balancer that spreads a user's requests over the processes lets
// through about the configured total; a user pinned to one process gets
// only that process's share. The cap on open waiters (long polls that wait,
// event streams) is exact: they are counted in a table, written once when a
// waiter opens and once when it ends (waiterSlots); only when the database
// refuses does a process fall back to its share, the cap ÷ N.

// RateLimit is a per-user token bucket: PerSecond requests on average, up to
// Burst at once. A zero PerSecond turns the limit off.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// share is one process's part of the limit when n processes enforce it:
// rate ÷ n and burst ÷ n, rounded down so that the n parts never add up to
// more than the whole, but never below one request.
func (l RateLimit) share(n int) RateLimit {
	n = max(n, 1)
	return RateLimit{PerSecond: l.PerSecond / float64(n), Burst: shareOf(l.Burst, n)}
}

// withBurst gives a limit without a burst one second's worth of requests.
func (l RateLimit) withBurst() RateLimit {
	if l.Burst < 1 {
		l.Burst = int(math.Ceil(l.PerSecond))
	}
	return l
}

// shareOf is one process's part of a deployment-wide count (a burst, a cap
// on waiters): total ÷ n rounded down, at least 1.
func shareOf(total, n int) int { return max(1, total/max(n, 1)) }

// userLimiters holds one token bucket per user, forgetting users idle for
// longer than it takes their bucket to refill (they would start full anyway),
// so memory stays bounded by the users active recently.
type userLimiters struct {
	total RateLimit // the deployment-wide limit
	mu    sync.Mutex
	n     int       // the number of processes the buckets are sized for
	cur   RateLimit // total.share(n)
	users map[string]*userBucket
	swept time.Time
}

type userBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newUserLimiters(l RateLimit) *userLimiters {
	if l.PerSecond <= 0 {
		return nil
	}
	l = l.withBurst()
	return &userLimiters{total: l, n: 1, cur: l.share(1), users: map[string]*userBucket{}}
}

// allow takes a token for user when n API processes share the limit; when
// there is none it says how long until there is.
func (u *userLimiters) allow(user string, n int, now time.Time) (bool, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.resize(max(n, 1), now)
	u.sweep(now)
	b, ok := u.users[user]
	if !ok {
		b = &userBucket{lim: rate.NewLimiter(rate.Limit(u.cur.PerSecond), u.cur.Burst)}
		u.users[user] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// resize gives every bucket this process's new share when the number of
// processes changes (rarely: a replica starts or stops). A bucket keeps its
// tokens up to the new burst.
func (u *userLimiters) resize(n int, now time.Time) {
	if n == u.n {
		return
	}
	u.n, u.cur = n, u.total.share(n)
	for _, b := range u.users {
		b.lim.SetLimitAt(now, rate.Limit(u.cur.PerSecond))
		b.lim.SetBurstAt(now, u.cur.Burst)
	}
}

func (u *userLimiters) sweep(now time.Time) {
	idle := time.Duration(float64(u.cur.Burst)/u.cur.PerSecond*float64(time.Second)) + time.Minute
	if now.Sub(u.swept) < idle {
		return
	}
	u.swept = now
	for user, b := range u.users {
		if now.Sub(b.seen) > idle {
			delete(u.users, user)
		}
	}
}

// limitRate answers 429 with Retry-After when the caller's bucket for this
// kind of request is empty: POSTs draw from the write bucket, everything
// else from the read bucket. It runs after authentication: limits are per user.
func limitRate(reads, writes *userLimiters, replicas *Replicas) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principalFrom(c.Request().Context())
			if p == nil {
				return next(c)
			}
			lim := reads
			if c.Request().Method == http.MethodPost {
				lim = writes
			}
			if lim == nil {
				return next(c)
			}
			if ok, wait := lim.allow(p.Subject, replicas.Count(), time.Now()); !ok {
				return tooMany(c, wait)
			}
			return next(c)
		}
	}
}

// tooMany is the 429 with a Retry-After of wait rounded up to whole seconds.
func tooMany(c echo.Context, wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return errorf(http.StatusTooManyRequests, msgTooMany)
}

// waiterOpenTimeout bounds the database's answer to a waiter's open: past
// it, the request is admitted by this process's share instead of waiting
// longer for a slot than a client would wait for its answer.
const waiterOpenTimeout = 2 * time.Second

// waiterCloseTimeout bounds a waiter's close, which runs after the request
// may have ended (client gone, drain): it has a deadline of its own.
const waiterCloseTimeout = 5 * time.Second

// waiterSlots caps each user's open long polls and event streams. With a
// registry of API processes (Replicas, which has the store), each waiter is
// a row of the waiters table, opened and deleted once per waiter (never per
// poll), and the cap holds exactly for the whole deployment. When the
// database refuses the open (down, slow, this process not yet registered),
// the request is not failed: this process admits it against its share of
// the cap, total ÷ N, as if the other processes held their shares. Without
// a registry (one process, tests) the cap is counted here alone.
type waiterSlots struct {
	total int // the deployment-wide cap per user
	mu    sync.Mutex
	// open counts this process's waiters per user, whether the table or
	// the share admitted them: the share is checked against all of them.
	open map[string]int
	// unclosed are table rows to delete: of waiters that ended (closeLater
	// deletes them in batches), whose delete failed, or whose open failed
	// with an unknown outcome. Until then they count against their users
	// (and go with this process's registry entry at the latest).
	unclosed []int64
	closing  bool       // closeLater is running
	closeMu  sync.Mutex // held by a delete of unclosed rows (closeNow)
}

// waiterSlot is one taken slot: the user's, and its row in the waiters
// table (0 when this process's share admitted it).
type waiterSlot struct {
	user string
	row  int64
}

// newWaiterSlots caps each user's waiters at total across the deployment; 0
// turns the cap off (nil).
func newWaiterSlots(total int) *waiterSlots {
	if total <= 0 {
		return nil
	}
	return &waiterSlots{total: total, open: map[string]int{}}
}

// acquire takes one of the user's slots, or says there is none. Whoever
// takes a slot releases it once.
func (w *waiterSlots) acquire(ctx context.Context, user string, r *Replicas) (waiterSlot, bool) {
	if w == nil {
		return waiterSlot{}, true
	}
	if r != nil {
		octx, cancel := context.WithTimeout(ctx, waiterOpenTimeout)
		// Rows of waiters that ended and wait for closeLater go first, so
		// that a client which polls again the moment its answer came finds
		// its place free on this process at least.
		_ = w.closeNow(octx, r) // a failure keeps them for later; the open goes on
		row, ok, err := r.openWaiter(octx, user, w.total)
		cancel()
		if err == nil {
			if ok {
				w.count(user, 1)
			}
			return waiterSlot{user: user, row: row}, ok
		}
		// The open may have committed before it failed (a connection lost
		// after the commit): close the row with the next close, to be sure.
		w.unclose(row)
		if ctx.Err() != nil {
			return waiterSlot{}, false // the client left; nothing to admit
		}
		r.log.Warn("waiter cap: open in the database failed; admitting by this process's share", "err", err)
	}
	return waiterSlot{user: user}, w.acquireShare(user, r.Count())
}

// acquireShare takes one of the user's slots in this process when n
// processes share the cap, or says there is none.
func (w *waiterSlots) acquireShare(user string, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[user] >= shareOf(w.total, n) {
		return false
	}
	w.open[user]++
	return true
}

// count adds d to the user's waiters in this process.
func (w *waiterSlots) count(user string, d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[user] += d; w.open[user] <= 0 {
		delete(w.open, user) // the map holds only users who are waiting
	}
}

// release gives back a slot that acquire took. Its row is deleted in the
// background (closeLater), with the rows of the waiters that ended
// meanwhile, in one statement: a long poll's answer is not held back by a
// delete, and a burst of answers costs one delete, not one each. Until
// then, a few milliseconds, the row still counts against its user on the
// other processes; this one deletes it before its next open.
func (w *waiterSlots) release(ctx context.Context, slot waiterSlot, r *Replicas) {
	if w == nil {
		return
	}
	w.count(slot.user, -1)
	if slot.row == 0 || r == nil {
		return
	}
	w.mu.Lock()
	w.unclosed = append(w.unclosed, slot.row)
	start := !w.closing
	w.closing = true
	w.mu.Unlock()
	if start {
		go w.closeLater(context.WithoutCancel(ctx), r)
	}
}

// closeBatchDelay is how long a waiter's row waits for others to be
// deleted with it.
const closeBatchDelay = 5 * time.Millisecond

// closeLater deletes the rows of the waiters that ended, a batch every
// closeBatchDelay, until none is left or a delete fails (the rows are then
// kept for the next close).
func (w *waiterSlots) closeLater(ctx context.Context, r *Replicas) {
	for {
		time.Sleep(closeBatchDelay)
		// Seen empty and marked stopped under one lock: a release that
		// comes after starts another closeLater.
		w.mu.Lock()
		if len(w.unclosed) == 0 {
			w.closing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, waiterCloseTimeout)
		err := w.closeNow(cctx, r)
		cancel()
		if err != nil {
			w.mu.Lock()
			w.closing = false // the next release tries again
			w.mu.Unlock()
			return
		}
	}
}

// closeNow deletes the rows waiting to be closed, if any; a failed delete
// keeps them for the next try. Closes run one
// at a time (closeMu), so that an open which closes first also waits for a
// delete already under way: the rows of every waiter that ended before it
// are gone when it counts.
func (w *waiterSlots) closeNow(ctx context.Context, r *Replicas) error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	w.mu.Lock()
	rows := w.unclosed
	w.unclosed = nil
	w.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	if err := r.closeWaiters(ctx, rows); err != nil {
		r.log.Warn("waiter cap: close in the database failed; retried at the next close", "rows", len(rows), "err", err)
		w.unclose(rows...)
		return err
	}
	return nil
}

// unclose keeps rows for the next close to delete.
func (w *waiterSlots) unclose(rows ...int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rows {
		if r != 0 {
			w.unclosed = append(w.unclosed, r)
		}
	}
}

// tooManyWaiters is the 429 of a long poll or event stream over the cap: the
// client may retry once one of its waiters has ended.
func tooManyWaiters() server.TooManyRequestsJSONResponse {
	r := RetryAfterSeconds
	return server.TooManyRequestsJSONResponse{Body: gen.Error{Error: msgTooMany}, Headers: server.TooManyRequestsResponseHeaders{RetryAfter: &r}}
}

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
// failure keeps it (taking one from a new bucket when there was none).
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

// clientIP returns echo's extractor of the client address: the direct peer,
// or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one (echo walks the header from the right and
// stops at the first untrusted address; an unparsable entry yields the
// peer). Echo trusts loopback, link-local and private addresses by default;
// only the configured ranges are trusted here.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, r := range trusted {
		opts = append(opts, echo.TrustIPRange(r))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
