package impl

import (
	"strconv"

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
		if w, err := strconv.Atoi(c.QueryParam("waitSeconds")); err == nil && w > 0 {
			return metrics.StreamLongPoll
		}
	}
	return ""
}
