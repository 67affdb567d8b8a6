package impl

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// RateLimit is a per-user token bucket: PerSecond requests on average, up to
// Burst at once. A zero PerSecond turns the limit off.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// userLimiters holds one token bucket per user, forgetting users idle for
// longer than it takes their bucket to refill (they would start full anyway),
// so memory stays bounded by the users active recently.
type userLimiters struct {
	limit RateLimit
	mu    sync.Mutex
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
	if l.Burst < 1 {
		l.Burst = int(math.Ceil(l.PerSecond))
	}
	return &userLimiters{limit: l, users: map[string]*userBucket{}}
}

// allow takes a token for user; when there is none it says how long until
// there is.
func (u *userLimiters) allow(user string, now time.Time) (bool, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	b, ok := u.users[user]
	if !ok {
		b = &userBucket{lim: rate.NewLimiter(rate.Limit(u.limit.PerSecond), u.limit.Burst)}
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

func (u *userLimiters) sweep(now time.Time) {
	idle := time.Duration(float64(u.limit.Burst)/u.limit.PerSecond*float64(time.Second)) + time.Minute
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
func limitRate(reads, writes *userLimiters) echo.MiddlewareFunc {
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
			if ok, wait := lim.allow(p.Subject, time.Now()); !ok {
				secs := int(math.Ceil(wait.Seconds()))
				c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
				return errorf(http.StatusTooManyRequests, msgTooMany)
			}
			return next(c)
		}
	}
}
