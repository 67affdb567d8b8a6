package conformance

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// pendingJob creates a PENDING job (the in-process server runs no worker).
func pendingJob(t *testing.T) (tok, id string) {
	t.Helper()
	tok = token(t, newUser(t), true)
	return tok, create(t, "/api/admin/prompts/preview", jsonHeader(tok), `{"prompt":"poll me"}`).ID
}

// advance changes a job the way a worker does, bumping its version.
func advance(t *testing.T, id, status string) {
	t.Helper()
	var err error
	switch status {
	case "PROCESSING":
		_, err = env.db.Exec(`UPDATE jobs SET status = 'PROCESSING', attempts = attempts + 1, started_at = COALESCE(started_at, now()),
			updated_at = now(), version = version + 1 WHERE id = $1`, id)
	case "COMPLETED":
		_, err = env.db.Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1)
			UPDATE jobs SET status = 'COMPLETED', result = '{"output":"done"}', completed_at = now(),
			updated_at = now(), version = version + 1 WHERE id = $1`, id)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func withINM(h http.Header, etag string) http.Header {
	h = h.Clone()
	h.Set("If-None-Match", etag)
	return h
}

// TestConditionalPolls: ETag, Cache-Control and Retry-After on every job
// response; If-None-Match gives a bodiless 304 with the same headers; only
// unfinished jobs carry Retry-After.
func TestConditionalPolls(t *testing.T) {
	requireInProcess(t)
	tok, id := pendingJob(t)
	resp, _ := do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 3 {
		t.Fatalf("ETag %q is not a strong entity tag", etag)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private, no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "3" {
		t.Errorf("pending job: Retry-After %q, want 3", ra)
	}

	for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
		resp, body := do(t, "GET", "/api/jobs/"+id, withINM(bearer(tok), inm), nil)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want a bodiless 304", inm, resp.StatusCode, len(body))
		}
		if resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") != "private, no-cache" || resp.Header.Get("Retry-After") != "3" {
			t.Errorf("304 headers differ from the 200's: %v", resp.Header)
		}
	}
	if resp, _ := do(t, "GET", "/api/jobs/"+id, withINM(bearer(tok), `"stale"`), nil); resp.StatusCode != 200 {
		t.Errorf("stale ETag: %d, want 200", resp.StatusCode)
	}

	advance(t, id, "PROCESSING")
	resp, _ = do(t, "GET", "/api/jobs/"+id, withINM(bearer(tok), etag), nil)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Errorf("after a change: %d with ETag %q (was %q)", resp.StatusCode, resp.Header.Get("ETag"), etag)
	}

	advance(t, id, "COMPLETED")
	resp, _ = do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		t.Errorf("finished job: Retry-After %q, want none", ra)
	}
	final := resp.Header.Get("ETag")
	for range 2 { // the second read comes from the finished-job cache
		resp, _ = do(t, "GET", "/api/jobs/"+id, withINM(bearer(tok), final), nil)
		if resp.StatusCode != 304 || resp.Header.Get("Retry-After") != "" || resp.Header.Get("ETag") != final {
			t.Errorf("finished job 304: %d, headers %v", resp.StatusCode, resp.Header)
		}
	}

	t.Run("no 304 for another user", func(t *testing.T) {
		other := token(t, newUser(t), false)
		_, theirs := do(t, "GET", "/api/jobs/"+id, withINM(bearer(other), final), nil)
		resp, none := do(t, "GET", "/api/jobs/"+uuid.NewString(), withINM(bearer(other), final), nil)
		if resp.StatusCode != 404 || string(theirs) != string(none) {
			t.Errorf("another user's conditional poll: %d %s vs %s", resp.StatusCode, theirs, none)
		}
	})
}

// TestLongPoll: waitSeconds answers when the job changes, after N seconds
// with a 304 otherwise, and at once for a finished job or without
// If-None-Match. Bounds are functional and generous.
func TestLongPoll(t *testing.T) {
	requireInProcess(t)
	tok, id := pendingJob(t)
	resp, _ := do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
	etag := resp.Header.Get("ETag")

	t.Run("times out with 304", func(t *testing.T) {
		start := time.Now()
		resp, _ := do(t, "GET", "/api/jobs/"+id+"?waitSeconds=1", withINM(bearer(tok), etag), nil)
		if el := time.Since(start); resp.StatusCode != 304 || el < 900*time.Millisecond || el > 10*time.Second {
			t.Errorf("status %d after %v, want 304 after about 1 s", resp.StatusCode, el)
		}
	})
	t.Run("answers on change", func(t *testing.T) {
		go func() {
			// Change the job while the poll waits; the in-process server shows no sign of a waiting poll, so allow it time to reach its wait.
			time.Sleep(300 * time.Millisecond)
			advance(t, id, "PROCESSING")
		}()
		start := time.Now()
		resp, body := do(t, "GET", "/api/jobs/"+id+"?waitSeconds=20", withINM(bearer(tok), etag), nil)
		if el := time.Since(start); resp.StatusCode != 200 || el > 10*time.Second || !strings.Contains(string(body), `"PROCESSING"`) {
			t.Errorf("status %d after %v: %s", resp.StatusCode, el, body)
		}
	})
	t.Run("no If-None-Match answers at once", func(t *testing.T) {
		start := time.Now()
		resp, _ := do(t, "GET", "/api/jobs/"+id+"?waitSeconds=20", bearer(tok), nil)
		if el := time.Since(start); resp.StatusCode != 200 || el > 5*time.Second {
			t.Errorf("status %d after %v", resp.StatusCode, el)
		}
	})
	t.Run("finished job answers at once", func(t *testing.T) {
		advance(t, id, "COMPLETED")
		resp, _ := do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
		final := resp.Header.Get("ETag")
		start := time.Now()
		resp, _ = do(t, "GET", "/api/jobs/"+id+"?waitSeconds=20", withINM(bearer(tok), final), nil)
		if el := time.Since(start); resp.StatusCode != 304 || el > 5*time.Second {
			t.Errorf("status %d after %v", resp.StatusCode, el)
		}
	})
	for _, q := range []string{"?waitSeconds=31", "?waitSeconds=-1", "?waitSeconds=x"} {
		t.Run("bad "+q, func(t *testing.T) {
			resp, body := do(t, "GET", "/api/jobs/"+id+q, bearer(tok), nil)
			if resp.StatusCode != 400 || !strings.Contains(errorMessage(t, body), "waitSeconds") {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("If-None-Match over maxLength", func(t *testing.T) {
		resp, body := do(t, "GET", "/api/jobs/"+id, withINM(bearer(tok), strings.Repeat("a", 1001)), nil)
		if resp.StatusCode != 400 || !strings.Contains(errorMessage(t, body), "If-None-Match") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("unknown query parameter", func(t *testing.T) {
		resp, body := do(t, "GET", "/api/jobs/"+id+"?wait=5", bearer(tok), nil)
		if resp.StatusCode != 200 {
			t.Errorf("%d %s (parameters the spec does not name are ignored)", resp.StatusCode, body)
		}
	})
}

type sseEvent struct {
	id, event, data string
}

// readEvents reads events from an SSE body until it ends or n arrive.
func readEvents(t *testing.T, sc *bufio.Scanner, n int) (events []sseEvent, retry string, ended bool) {
	t.Helper()
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				events = append(events, cur)
				if len(events) == n {
					return events, retry, false
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, "retry: "):
			retry = strings.TrimPrefix(line, "retry: ")
		}
	}
	return events, retry, true
}

func openStream(t *testing.T, tok, id, lastEventID string) (*http.Response, *bufio.Scanner) {
	t.Helper()
	req, _ := http.NewRequest("GET", env.baseURL+"/api/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewScanner(resp.Body)
}

// validJob checks an event's data against the Job schema.
func validJob(t *testing.T, data string) map[string]any {
	t.Helper()
	doc, _ := loadSpec(t)
	var v map[string]any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("event data is not JSON: %s", data)
	}
	if err := doc.Components.Schemas["Job"].Value.VisitJSON(v); err != nil {
		t.Errorf("event data does not match the Job schema: %v\n%s", err, data)
	}
	return v
}

// TestEventStream: the job now and on every change, in order, ids equal to
// the ETags, ending after the terminal event; resuming with Last-Event-ID
// skips what the client has.
func TestEventStream(t *testing.T) {
	requireInProcess(t)
	tok, id := pendingJob(t)
	resp, sc := openStream(t, tok, id, "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || resp.Header.Get("Cache-Control") != "private, no-cache" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	first, retry, _ := readEvents(t, sc, 1)
	if retry != "3000" || len(first) != 1 || validJob(t, first[0].data)["status"] != "PENDING" {
		t.Fatalf("first event %+v, retry %q", first, retry)
	}
	poll, _ := do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
	if first[0].id != poll.Header.Get("ETag") {
		t.Errorf("event id %q, ETag %q", first[0].id, poll.Header.Get("ETag"))
	}

	t.Run("resume skips what the client has", func(t *testing.T) {
		_, sc2 := openStream(t, tok, id, first[0].id)
		advance(t, id, "PROCESSING")
		ev, _, _ := readEvents(t, sc2, 1)
		if len(ev) != 1 || validJob(t, ev[0].data)["status"] != "PROCESSING" {
			t.Errorf("resumed stream's first event: %+v", ev)
		}
	})

	next, _, _ := readEvents(t, sc, 1)
	advance(t, id, "COMPLETED")
	last, _, ended := readEvents(t, sc, 2)
	if !ended || len(next) != 1 || len(last) != 1 {
		t.Fatalf("events %+v then %+v, ended %v", next, last, ended)
	}
	if validJob(t, next[0].data)["status"] != "PROCESSING" || validJob(t, last[0].data)["status"] != "COMPLETED" {
		t.Errorf("order: %s then %s", next[0].data, last[0].data)
	}

	t.Run("errors are the status endpoint's", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			h      http.Header
			status int
		}{
			{"/api/jobs/not-a-uuid/events", bearer(tok), 400},
			{"/api/jobs/" + id + "/events", nil, 401},
			{"/api/jobs/" + id + "/events", bearer(token(t, newUser(t), false)), 404},
		} {
			if resp, body := do(t, "GET", tc.path, tc.h, nil); resp.StatusCode != tc.status {
				t.Errorf("%s: %d %s", tc.path, resp.StatusCode, body)
			}
		}
	})
}
