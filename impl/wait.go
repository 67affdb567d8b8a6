package impl

import (
	"strconv"

	"github.com/labstack/echo/v4"
)

// waitSecondsKey holds a request's parsed waitSeconds in its echo context.
const waitSecondsKey = "jobsd.wait_seconds"

// waitSeconds returns the request's waitSeconds query parameter as an
// integer, 0 when absent or not an integer (the validator answers that 400
// later). It parses once per request and keeps the value in the echo
// context: the metrics and deadline middlewares both need it before the
// generated binder parses it for the handler. A request without a query
// string (most polls) has none: that needs neither parsing nor the context.
func waitSeconds(c echo.Context) int {
	if c.Request().URL.RawQuery == "" {
		return 0
	}
	if w, ok := c.Get(waitSecondsKey).(int); ok {
		return w
	}
	w, err := strconv.Atoi(c.QueryParam("waitSeconds"))
	if err != nil {
		w = 0
	}
	c.Set(waitSecondsKey, w)
	return w
}
