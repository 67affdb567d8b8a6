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
// generated binder parses it for the handler.
func waitSeconds(c echo.Context) int {
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
