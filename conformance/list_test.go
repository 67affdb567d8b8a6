package conformance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

type jobList struct {
	Jobs []struct {
		ID     string `json:"id"`
		Type   string `json:"type"`
		Status string `json:"status"`
	} `json:"jobs"`
	NextCursor *string `json:"nextCursor"`
}

func list(t *testing.T, tok, query string) (int, jobList, []byte) {
	t.Helper()
	resp, body := do(t, "GET", "/api/jobs"+query, bearer(tok), nil)
	var l jobList
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, l, body
}

// TestList: the caller's own jobs, newest first, paged by an opaque cursor,
// filtered by type and status; nobody else's.
func TestList(t *testing.T) {
	requireInProcess(t)
	user := newUser(t)
	tok := token(t, user, true)
	var created []string
	for i := range 5 {
		j := create(t, "/api/admin/prompts/preview", jsonHeader(tok), fmt.Sprintf(`{"prompt":"job %d"}`, i))
		created = append(created, j.ID)
	}
	create(t, "/api/jobs", jsonHeader(tok), `{"type":"RISK_ANALYSIS","input":{"text":"Prices may fall."}}`)
	create(t, "/api/admin/prompts/preview", jsonHeader(token(t, newUser(t), true)), `{"prompt":"someone else's"}`)

	var seen []string
	query := "?limit=2&type=AI_PREVIEW"
	for page := 0; ; page++ {
		status, l, body := list(t, tok, query)
		if status != 200 {
			t.Fatalf("page %d: %d %s", page, status, body)
		}
		for _, j := range l.Jobs {
			seen = append(seen, j.ID)
		}
		if l.NextCursor == nil {
			break
		}
		if page > 5 {
			t.Fatal("the cursor never ends")
		}
		query = "?limit=2&type=AI_PREVIEW&cursor=" + url.QueryEscape(*l.NextCursor)
	}
	if len(seen) != 5 {
		t.Fatalf("saw %d AI_PREVIEW jobs, want 5: %v", len(seen), seen)
	}
	for i := range seen {
		if seen[i] != created[len(created)-1-i] {
			t.Fatalf("order %v, want newest first %v", seen, created)
		}
	}

	if _, l, _ := list(t, tok, "?status=PENDING"); len(l.Jobs) != 6 {
		t.Errorf("PENDING filter: %d jobs, want 6", len(l.Jobs))
	}
	if _, l, _ := list(t, tok, "?status=COMPLETED"); len(l.Jobs) != 0 {
		t.Errorf("COMPLETED filter: %d jobs, want 0", len(l.Jobs))
	}
	if _, l, _ := list(t, tok, "?type=RISK_ANALYSIS"); len(l.Jobs) != 1 {
		t.Errorf("type filter: %d jobs, want 1", len(l.Jobs))
	}
}

// TestListBadQueries: out-of-range and malformed query parameters are 400s
// naming the parameter.
func TestListBadQueries(t *testing.T) {
	tok := token(t, newUser(t), false)
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=abc", "?status=DONE", "?type=x", "?cursor=not-a-cursor", "?cursor=%00"} {
		t.Run(q, func(t *testing.T) {
			status, _, body := list(t, tok, q)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
		})
	}
}

// TestRoutesAndHealth: unknown routes and methods answer in the error shape;
// health endpoints need no token.
func TestRoutesAndHealth(t *testing.T) {
	tok := token(t, newUser(t), false)
	tests := []struct {
		name, method, path string
		header             http.Header
		status             int
	}{
		{"healthz", "GET", "/healthz", nil, 200},
		{"readyz", "GET", "/readyz", nil, 200},
		{"unknown route", "GET", "/nope", nil, 404},
		{"unknown api route with token", "GET", "/api/nope", bearer(tok), 404},
		{"unknown api route without token", "GET", "/api/nope", nil, 401},
		{"wrong method", "DELETE", "/api/jobs", bearer(tok), 405},
		{"wrong method on a job", "PUT", "/api/jobs/" + exampleID, bearer(tok), 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, tt.path, tt.header, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
		})
	}
}

// TestRequestID: every response names its request with an id the server
// chose; an X-Request-Id the client sent is not taken for it.
func TestRequestID(t *testing.T) {
	h := http.Header{"X-Request-Id": {"chosen-by-the-client"}}
	seen := map[string]bool{}
	for range 2 {
		resp, _ := do(t, "GET", "/healthz", h, nil)
		id := resp.Header.Get("X-Request-Id")
		if id == "" || id == "chosen-by-the-client" || seen[id] {
			t.Errorf("X-Request-Id %q (earlier: %v)", id, seen)
		}
		seen[id] = true
	}
}

// TestCORS: an allowed origin's preflight is answered without a token and
// the headers clients need are exposed; other origins get no grant.
func TestCORS(t *testing.T) {
	requireInProcess(t)
	h := http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}
	resp, _ := do(t, "OPTIONS", "/api/jobs/"+exampleID, h, nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	tok := token(t, newUser(t), false)
	h = bearer(tok)
	h.Set("Origin", "https://app.example.com")
	resp, _ = do(t, "GET", "/api/jobs", h, nil)
	if got := resp.Header.Get("Access-Control-Expose-Headers"); got == "" {
		t.Error("no Access-Control-Expose-Headers")
	}
	h.Set("Origin", "https://evil.example.com")
	resp, _ = do(t, "GET", "/api/jobs", h, nil)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("a foreign origin was granted %q", got)
	}
}
