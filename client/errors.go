package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/jobsd/jobsd/gen"
)

// APIError is a non-2xx answer of the API.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 404.
	StatusCode int
	// Message is the server's {"error": "..."} text (the status text when
	// the body had none).
	Message string
	// RequestID is the X-Request-Id header, which names the request in the
	// server's log; empty when absent.
	RequestID string
}

// Error implements error: "404 Not Found: Job not found or ...".
func (e *APIError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// StatusCode returns the HTTP status of an *APIError in err's chain, or 0.
func StatusCode(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsBadRequest reports whether err is a 400 answer (a malformed id or body).
func IsBadRequest(err error) bool { return StatusCode(err) == http.StatusBadRequest }

// IsUnauthorized reports whether err is a 401 answer (missing or invalid token).
func IsUnauthorized(err error) bool { return StatusCode(err) == http.StatusUnauthorized }

// IsForbidden reports whether err is a 403 answer (e.g. a non-admin previewing).
func IsForbidden(err error) bool { return StatusCode(err) == http.StatusForbidden }

// IsNotFound reports whether err is a 404 answer: no such job, or another
// user's.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsConflict reports whether err is a 409 answer: cancelling a finished job,
// or an Idempotency-Key reused with another body.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsTemporary reports whether err is an answer worth retrying later: 429,
// 502, 503 or 504.
func IsTemporary(err error) bool {
	switch StatusCode(err) {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// JobFailedError is returned by Client.Wait, together with the job, when the
// job ends FAILED.
type JobFailedError struct {
	// Job is the FAILED job.
	Job *gen.Job
	// Message is the job's error field, e.g.
	// "Bedrock API error: ThrottlingException - Rate exceeded".
	Message string
}

// Error implements error: "job <id> failed after <n> attempt(s): <message>".
func (e *JobFailedError) Error() string {
	n := 0
	id := ""
	if e.Job != nil {
		n, id = e.Job.Attempts, e.Job.Id.String()
	}
	s := "s"
	if n == 1 {
		s = ""
	}
	return fmt.Sprintf("job %s failed after %d attempt%s: %s", id, n, s, e.Message)
}
