package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// An HTTP client for the API that records every answer (status, body,
// headers, timing, transport error) and says what is wrong with one.

type client struct {
	base  string
	token string
	hc    *http.Client
}

// clientTimeout is far above any bound the service promises (5 s statements):
// a request that reaches it has hung.
const clientTimeout = 20 * time.Second

func newClient(base, token string) *client {
	return &client{base: base, token: token, hc: &http.Client{
		Timeout:   clientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}}
}

type result struct {
	method, path string
	status       int
	body         []byte
	hdr          http.Header
	start        time.Time
	dur          time.Duration
	err          error
}

func (c *client) do(method, path string, body any, hdr ...string) result {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	r := result{method: method, path: path, start: time.Now()}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		r.err = err
		return r
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		r.err, r.dur = err, time.Since(r.start)
		return r
	}
	r.body, r.err = io.ReadAll(resp.Body)
	resp.Body.Close()
	r.status, r.hdr, r.dur = resp.StatusCode, resp.Header, time.Since(r.start)
	return r
}

// apiJob is the job as the API shows it.
type apiJob struct {
	ID          uuid.UUID `json:"id"`
	Status      string    `json:"status"`
	Error       *string   `json:"error"`
	Attempts    int       `json:"attempts"`
	CreatedAt   string    `json:"createdAt"`
	StartedAt   *string   `json:"startedAt"`
	CompletedAt *string   `json:"completedAt"`
	UpdatedAt   string    `json:"updatedAt"`
}

func (r result) job() (apiJob, bool) {
	var j apiJob
	if json.Unmarshal(r.body, &j) != nil || j.ID == uuid.Nil {
		return j, false
	}
	return j, true
}

func terminal(status string) bool { return status == "COMPLETED" || status == "FAILED" }

// problem says what is wrong with a response under fault: nothing for 2xx,
// 304 and 4xx with the error shape, and for the documented 503 (exact body,
// Retry-After); anything else (a 500, another 5xx, a body that is not the
// error shape, a transport error or a client timeout) is a problem.
func (r result) problem() string {
	if r.err != nil {
		return fmt.Sprintf("%s %s: transport error after %v: %v", r.method, r.path, r.dur.Round(time.Millisecond), r.err)
	}
	switch {
	case r.status == http.StatusNotModified:
		return ""
	case r.status == http.StatusServiceUnavailable:
		if strings.HasPrefix(r.path, "/readyz") {
			return "" // readyz has its own message
		}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(r.body, &e) != nil || e.Error != "Service temporarily unavailable" || r.hdr.Get("Retry-After") == "" {
			return fmt.Sprintf("%s %s: 503 without the documented shape: %q (Retry-After %q)", r.method, r.path, r.body, r.hdr.Get("Retry-After"))
		}
		return ""
	case r.status >= 500:
		return fmt.Sprintf("%s %s: %d %q", r.method, r.path, r.status, r.body)
	}
	if !json.Valid(r.body) {
		return fmt.Sprintf("%s %s: %d with a body that is not JSON: %q", r.method, r.path, r.status, r.body)
	}
	if r.status >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(r.body, &e) != nil || e.Error == "" {
			return fmt.Sprintf("%s %s: %d without the error shape: %q", r.method, r.path, r.status, r.body)
		}
	}
	return ""
}
