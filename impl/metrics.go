package impl

import (
	"reflect"

	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/metrics"
)

// streamKind tells metrics which requests wait on a job rather than answer
// at once: a status poll with waitSeconds > 0 (a long poll, even one that
// answers at once because the job already changed or finished) and the
// event stream. Their duration is the job's, not the server's, so they are
// counted as open connections instead of latencies.
func streamKind(c echo.Context) string {
	if c.Request().Method != "GET" {
		return ""
	}
	switch c.Path() {
	case "/api/jobs/:id/events":
		return metrics.StreamEvents
	case "/api/jobs/:id":
		if waitSeconds(c) > 0 {
			return metrics.StreamLongPoll
		}
	}
	return ""
}

// metricsMiddleware measures every request that reaches the echo server.
// It is installed first, so that it sees what every other middleware
// answers, including authentication failures and the router's 404s; it
// writes an error response itself (c.Error), as echo's logger does, so that
// the status it records is the one sent.
func metricsMiddleware(a *metrics.API) echo.MiddlewareFunc {
	if a == nil {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			route, kind := routeLabel(c), ""
			if route != metrics.RouteUnmatched {
				kind = streamKind(c)
			}
			done := a.Request(route, c.Request().Method, kind)
			if err := next(c); err != nil {
				c.Error(err)
			}
			done(c.Response().Status)
			return nil
		}
	}
}

// notFound is echo's router-level 404 handler. When no route matches, echo
// still sets c.Path() to the nearest node's path (a prefix of some route),
// so the handler, not the path, tells an unmatched request.
var notFound = reflect.ValueOf(echo.NotFoundHandler).Pointer()

// routeLabel is the route template echo matched ("/api/jobs/:id"), or
// metrics.RouteUnmatched: never the raw path, which is whatever a client or
// a scanner sent. A 405 keeps its template: the path did match a route.
func routeLabel(c echo.Context) string {
	p := c.Path()
	if p == "" || c.Handler() == nil || reflect.ValueOf(c.Handler()).Pointer() == notFound {
		return metrics.RouteUnmatched
	}
	return p
}
