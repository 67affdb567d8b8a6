package impl

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/store"
)

// The documented error messages. Clients may match on them; never reword.
const (
	msgInvalidUUID     = "Invalid UUID format"
	msgUnauthorized    = "Missing or invalid Bearer token"
	msgNotFound        = "Job not found or does not belong to the requesting user"
	msgForbidden       = "Admin access required"
	msgConflict        = "Idempotency-Key was already used with a different request body"
	msgTooLarge        = "Request body too large"
	msgInternal        = "Internal error"
	msgUnavailable     = "Service temporarily unavailable"
	msgRouteNotFound   = "Not found"
	msgNotAllowed      = "Method not allowed"
	msgMediaType       = "Content-Type must be application/json"
	msgAlreadyFinished = "Job has already finished"
	msgTooMany         = "Too many requests"
	// The operator's API: any job, so "not found" says nothing of owners.
	msgAdminNotFound   = "Job not found"
	msgNotFailed       = "Only a FAILED job can be requeued"
	msgCancelledJob    = "A cancelled job is never requeued"
	msgAlreadyRequeued = "Job was already requeued"
)

// apiError is an error with the status and message a client sees.
type apiError struct {
	status  int
	message string
	// retryAfter is a 429's Retry-After in seconds; a 503 without one says
	// the polling interval.
	retryAfter string
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, message string) *apiError { return &apiError{status: status, message: message} }

// tooManyRequests is a 429 that says when to try again.
func tooManyRequests(retryAfterSeconds int) *apiError {
	return &apiError{status: http.StatusTooManyRequests, message: msgTooMany, retryAfter: strconv.Itoa(max(retryAfterSeconds, 1))}
}

var (
	errInvalidUUID  = errorf(http.StatusBadRequest, msgInvalidUUID)
	errUnauthorized = errorf(http.StatusUnauthorized, msgUnauthorized)
	errNotFound     = errorf(http.StatusNotFound, msgNotFound)
	errForbidden    = errorf(http.StatusForbidden, msgForbidden)
	// A cancel of a job that had finished already.
	errAlreadyFinished = errorf(http.StatusConflict, msgAlreadyFinished)
)

// paramInMessage finds the parameter name in the generated binder's errors,
// which otherwise carry parser internals.
var paramInMessage = regexp.MustCompile(`parameter '?([A-Za-z0-9_-]+)'?`)

// toAPIError maps any error that reaches the router to what the client sees.
// This is the one table from errors to statuses.
func toAPIError(err error, path string) (e *apiError, internal bool) {
	if errors.As(err, &e) {
		return e, false
	}
	switch {
	case errors.Is(err, store.ErrNotFound) && strings.HasPrefix(path, adminPrefix):
		return errorf(http.StatusNotFound, msgAdminNotFound), false
	case errors.Is(err, store.ErrNotFound):
		return errNotFound, false
	case errors.Is(err, store.ErrWebhookNotFound) && strings.HasPrefix(path, adminPrefix):
		return errorf(http.StatusNotFound, msgAdminWebhookNotFound), false
	case errors.Is(err, store.ErrWebhookNotFound):
		return errorf(http.StatusNotFound, msgWebhookNotFound), false
	case errors.Is(err, store.ErrWebhookLimit):
		return errorf(http.StatusConflict, msgWebhookLimit), false
	case errors.Is(err, store.ErrNotFailed):
		return errorf(http.StatusConflict, msgNotFailed), false
	case errors.Is(err, store.ErrCancelledJob):
		return errorf(http.StatusConflict, msgCancelledJob), false
	case errors.Is(err, store.ErrAlreadyRequeued):
		return errorf(http.StatusConflict, msgAlreadyRequeued), false
	case errors.Is(err, store.ErrIdempotencyConflict):
		return errorf(http.StatusConflict, msgConflict), false
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, msgUnavailable), true
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return errorf(499, "Client closed request"), false
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if he.Code == http.StatusNotFound && path == "/api/jobs/" {
			// GET /api/jobs/{id} with an empty id (an unset shell variable,
			// say) is a malformed id, not an unknown route.
			return errInvalidUUID, false
		}
		return fromEchoError(he), he.Code >= 500
	}
	return errorf(http.StatusInternalServerError, msgInternal), true
}

// fromEchoError rewrites echo's own errors (router, binder, body limit) into
// the documented shape, without their internal text.
func fromEchoError(he *echo.HTTPError) *apiError {
	switch he.Code {
	case http.StatusBadRequest:
		if msg, ok := he.Message.(string); ok {
			if m := paramInMessage.FindStringSubmatch(msg); m != nil {
				if m[1] == "id" {
					return errInvalidUUID
				}
				return errorf(http.StatusBadRequest, `Invalid parameter "`+m[1]+`"`)
			}
		}
		return errorf(http.StatusBadRequest, "Invalid request body")
	case http.StatusUnauthorized:
		return errUnauthorized
	case http.StatusNotFound:
		return errorf(http.StatusNotFound, msgRouteNotFound)
	case http.StatusMethodNotAllowed:
		return errorf(http.StatusMethodNotAllowed, msgNotAllowed)
	case http.StatusRequestEntityTooLarge:
		return errorf(http.StatusRequestEntityTooLarge, msgTooLarge)
	case http.StatusUnsupportedMediaType:
		return errorf(http.StatusUnsupportedMediaType, msgMediaType)
	case http.StatusServiceUnavailable:
		return errorf(http.StatusServiceUnavailable, msgUnavailable)
	}
	if he.Code >= 400 && he.Code < 500 {
		return errorf(he.Code, http.StatusText(he.Code))
	}
	return errorf(http.StatusInternalServerError, msgInternal)
}

// errorHandler is the echo.HTTPErrorHandler: every error a client sees has the
// documented shape {"error": "..."}; internals go to the log, named by the
// request id that the X-Request-Id header also carries.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e, internal := toAPIError(err, c.Request().URL.Path)
		if internal {
			log.Error("request failed", "request_id", requestID(c), "method", c.Request().Method,
				"route", c.Path(), "status", e.status, "err", err)
		}
		h := c.Response().Header()
		switch e.status {
		case http.StatusUnauthorized:
			h.Set(echo.HeaderWWWAuthenticate, wwwAuthenticate(c))
		case http.StatusServiceUnavailable:
			h.Set("Retry-After", cmp.Or(e.retryAfter, retryAfter)) // by default the polling interval, RetryAfterSeconds
		case http.StatusTooManyRequests:
			h.Set("Retry-After", e.retryAfter)
		case http.StatusMethodNotAllowed:
			// echo sets Allow on the router's 405; keep it.
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(e.status)
		} else {
			err = c.JSON(e.status, gen.Error{Error: e.message})
		}
		if err != nil {
			log.Warn("write error response", "request_id", requestID(c), "err", err)
		}
	}
}

func requestID(c echo.Context) string {
	return headerValue(c.Response().Header(), echo.HeaderXRequestID)
}
