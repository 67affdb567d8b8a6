package impl

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
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
				return tooMany(wait)
			}
			return next(c)
		}
	}
}

// tooMany is the 429 with a Retry-After of wait rounded up to whole seconds.
func tooMany(wait time.Duration) error {
	return tooManyRequests(int(math.Ceil(wait.Seconds())))
}
