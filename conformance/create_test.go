package conformance

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
)

func jsonHeader(tok string, extra ...string) http.Header {
	h := bearer(tok)
	h.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

type createdJob struct {
	ID       string  `json:"id"`
	Type     string  `json:"type"`
	Status   string  `json:"status"`
	Attempts int     `json:"attempts"`
	Result   any     `json:"result"`
	Error    *string `json:"error"`
}

// create posts body to path and requires a 202 with Location and Retry-After.
func create(t *testing.T, path string, h http.Header, body string) createdJob {
	t.Helper()
	resp, b := do(t, "POST", path, h, []byte(body))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: status %d, want 202: %s", path, resp.StatusCode, b)
	}
	var j createdJob
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/jobs/"+j.ID {
		t.Errorf("Location %q, want /api/jobs/%s", loc, j.ID)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	finished := st.Status == "COMPLETED" || st.Status == "FAILED" // an Idempotency-Key replay
	if ra := resp.Header.Get("Retry-After"); (ra != "3" && !finished) || (ra != "" && finished) {
		t.Errorf("Retry-After %q for a %s job, want 3 while unfinished, none once finished", ra, st.Status)
	}
	return j
}

// TestCreatePreview: an admin creates an AI_PREVIEW job, PENDING, and can
// poll it at its Location; a non-admin gets 403.
func TestCreatePreview(t *testing.T) {
	requireCreate(t)
	user := newUser(t)
	tok := token(t, user, true)
	j := create(t, "/api/admin/prompts/preview", jsonHeader(tok),
		`{"prompt":"Summarise the risks of {{crop}} farming","variables":{"crop":"maize"}}`)
	if j.Type != "AI_PREVIEW" || j.Status != "PENDING" || j.Attempts != 0 || j.Result != nil || j.Error != nil {
		t.Errorf("new job: %+v", j)
	}
	resp, body := do(t, "GET", "/api/jobs/"+j.ID, bearer(tok), nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(j.ID)) {
		t.Errorf("poll Location: %d %s", resp.StatusCode, body)
	}

	t.Run("non-admin is forbidden", func(t *testing.T) {
		requireInProcess(t)
		resp, body := do(t, "POST", "/api/admin/prompts/preview", jsonHeader(token(t, newUser(t), false)), []byte(`{"prompt":"x"}`))
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403: %s", resp.StatusCode, body)
		}
	})
}

// TestIdempotency: replay, conflict, per-user scope, and one job for
// concurrent requests with one key.
func TestIdempotency(t *testing.T) {
	requireCreate(t)
	user := newUser(t)
	tok := token(t, user, true)
	key := "key-" + uuid.NewString()
	first := create(t, "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), `{"prompt":"p {{a}}","variables":{"a":"1","b":"2"}}`)

	t.Run("same body, other spacing and key order", func(t *testing.T) {
		again := create(t, "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), `{ "variables": {"b":"2", "a":"1"}, "prompt": "p {{a}}" }`)
		if again.ID != first.ID {
			t.Errorf("replay made job %s, want the original %s", again.ID, first.ID)
		}
	})
	t.Run("different body", func(t *testing.T) {
		resp, body := do(t, "POST", "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), []byte(`{"prompt":"other"}`))
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("status %d, want 409: %s", resp.StatusCode, body)
		}
	})
	t.Run("other endpoint is another scope", func(t *testing.T) {
		j := create(t, "/api/jobs", jsonHeader(tok, "Idempotency-Key", key), `{"type":"RISK_ANALYSIS","input":{"text":"Prices may fall."}}`)
		if j.ID == first.ID {
			t.Error("the key was shared across endpoints")
		}
	})
	t.Run("other user is another scope", func(t *testing.T) {
		requireInProcess(t)
		j := create(t, "/api/admin/prompts/preview", jsonHeader(token(t, newUser(t), true), "Idempotency-Key", key), `{"prompt":"other"}`)
		if j.ID == first.ID {
			t.Error("another user's request replayed this user's job")
		}
	})
	t.Run("concurrent requests make one job", func(t *testing.T) {
		key := "race-" + uuid.NewString()
		var wg sync.WaitGroup
		ids := make([]string, 8)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = create(t, "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), `{"prompt":"race"}`).ID
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("one key made several jobs: %v", ids)
			}
		}
	})
	t.Run("a finished job's replay has no Retry-After", func(t *testing.T) {
		requireInProcess(t) // finished by hand: the in-process server runs no worker
		key := "done-" + uuid.NewString()
		body := `{"prompt":"finished"}`
		j := create(t, "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), body)
		advance(t, j.ID, "PROCESSING")
		advance(t, j.ID, "COMPLETED")
		resp, got := do(t, "POST", "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", key), []byte(body))
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(got), `"status":"COMPLETED"`) {
			t.Fatalf("replay: %d %s", resp.StatusCode, got)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			t.Errorf("a finished job's replay has Retry-After %q", ra)
		}
	})
	t.Run("invalid key", func(t *testing.T) {
		resp, body := do(t, "POST", "/api/admin/prompts/preview", jsonHeader(tok, "Idempotency-Key", "has space"), []byte(`{"prompt":"x"}`))
		if resp.StatusCode != 400 || !strings.Contains(errorMessage(t, body), "Idempotency-Key") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
}

// TestCreateJobTypes: each type with a valid input is accepted.
func TestCreateJobTypes(t *testing.T) {
	requireCreate(t)
	tok := token(t, newUser(t), false)
	doc := base64.StdEncoding.EncodeToString([]byte("# Title\n\nSome text."))
	tests := []struct{ name, body string }{
		{"PARSE_DOCUMENT", `{"type":"PARSE_DOCUMENT","input":{"document":"` + doc + `","contentType":"text/markdown","filename":"a.md"}}`},
		{"GAP_DETECTION", `{"type":"GAP_DETECTION","input":{"text":"We encrypt data at rest.","requirements":["Data is encrypted at rest"]}}`},
		{"RISK_ANALYSIS", `{"type":"RISK_ANALYSIS","input":{"documentJobId":"` + uuid.NewString() + `"}}`},
		{"REPORT_GENERATION", `{"type":"REPORT_GENERATION","input":{"title":"Q1","sections":[{"heading":"Intro","body":"Hello"}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := create(t, "/api/jobs", jsonHeader(tok), tt.body)
			if j.Type != tt.name || j.Status != "PENDING" {
				t.Errorf("job %+v", j)
			}
		})
	}
}

// TestBadBodies: every invalid body is a 400 naming the field, 413 when too
// large, 415 when not JSON; never a 500.
func TestBadBodies(t *testing.T) {
	tok := token(t, newUser(t), true)
	tests := []struct {
		name, path, body, contentType string
		status                        int
		mentions                      string
	}{
		{"no body", "/api/admin/prompts/preview", "", "application/json", 400, "body"},
		{"malformed JSON", "/api/admin/prompts/preview", `{"prompt":`, "application/json", 400, "JSON"},
		{"not an object", "/api/admin/prompts/preview", `["prompt"]`, "application/json", 400, "body"},
		{"missing prompt", "/api/admin/prompts/preview", `{}`, "application/json", 400, "prompt"},
		{"empty prompt", "/api/admin/prompts/preview", `{"prompt":""}`, "application/json", 400, "prompt"},
		{"prompt not a string", "/api/admin/prompts/preview", `{"prompt":42}`, "application/json", 400, "prompt"},
		{"prompt too long", "/api/admin/prompts/preview", `{"prompt":"` + strings.Repeat("x", 20001) + `"}`, "application/json", 400, "prompt"},
		{"unknown field", "/api/admin/prompts/preview", `{"prompt":"x","temperature":2}`, "application/json", 400, "temperature"},
		{"variable not a string", "/api/admin/prompts/preview", `{"prompt":"x","variables":{"a":1}}`, "application/json", 400, "variables"},
		{"bad modelId", "/api/admin/prompts/preview", `{"prompt":"x","modelId":"../../etc"}`, "application/json", 400, "modelId"},
		{"text/plain", "/api/admin/prompts/preview", `{"prompt":"x"}`, "text/plain", 415, ""},
		{"unknown type", "/api/jobs", `{"type":"MINING","input":{}}`, "application/json", 400, "type"},
		{"AI_PREVIEW through /api/jobs", "/api/jobs", `{"type":"AI_PREVIEW","input":{"prompt":"x"}}`, "application/json", 400, "type"},
		{"no type", "/api/jobs", `{"input":{}}`, "application/json", 400, "type"},
		{"missing input", "/api/jobs", `{"type":"RISK_ANALYSIS"}`, "application/json", 400, "input"},
		{"neither text nor documentJobId", "/api/jobs", `{"type":"RISK_ANALYSIS","input":{}}`, "application/json", 400, "input"},
		{"both text and documentJobId", "/api/jobs", `{"type":"GAP_DETECTION","input":{"text":"a","documentJobId":"` + uuid.NewString() + `","requirements":["r"]}}`, "application/json", 400, "input"},
		{"no requirements", "/api/jobs", `{"type":"GAP_DETECTION","input":{"text":"a","requirements":[]}}`, "application/json", 400, "requirements"},
		{"documentJobId not a UUID", "/api/jobs", `{"type":"RISK_ANALYSIS","input":{"documentJobId":"{550e8400-e29b-41d4-a716-446655440000}"}}`, "application/json", 400, "documentJobId"},
		{"document not base64", "/api/jobs", `{"type":"PARSE_DOCUMENT","input":{"document":"%%%","contentType":"text/plain"}}`, "application/json", 400, "document"},
		{"unsupported contentType", "/api/jobs", `{"type":"PARSE_DOCUMENT","input":{"document":"aGk=","contentType":"image/png"}}`, "application/json", 400, "contentType"},
		{"report without content", "/api/jobs", `{"type":"REPORT_GENERATION","input":{"title":"t"}}`, "application/json", 400, "input"},
		{"too large", "/api/admin/prompts/preview", `{"prompt":"` + strings.Repeat("x", 9<<20) + `"}`, "application/json", 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bearer(tok)
			h.Set("Content-Type", tt.contentType)
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			resp, b := do(t, "POST", tt.path, h, body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tt.status, b)
			}
			msg := errorMessage(t, b)
			t.Logf("%d %s", resp.StatusCode, msg)
			if !strings.Contains(msg, tt.mentions) {
				t.Errorf("message %q does not mention %q", msg, tt.mentions)
			}
		})
	}
}

// TestProcessingWhileRunning: while a job's attempt runs, a poll sees it
// PROCESSING with attempts 1, startedAt set and no result or error; then
// COMPLETED with attempts 1. It needs a worker and the local provider's
// [[simulate:slow]] marker: black-box mode against a deployment that says
// CONFORMANCE_PROVIDER=local (make conformance-blackbox does); the in-process
// server runs no worker.
func TestProcessingWhileRunning(t *testing.T) {
	requireCreate(t)
	if !env.blackBox || os.Getenv("CONFORMANCE_PROVIDER") != "local" {
		t.Skip("needs a worker with the local provider: black-box mode with CONFORMANCE_PROVIDER=local")
	}
	tok := token(t, newUser(t), true)
	j := create(t, "/api/admin/prompts/preview", jsonHeader(tok), `{"prompt":"[[simulate:slow=3s]] Summarise the risks of maize farming."}`)
	seen := map[string]map[string]any{}
	// A 3 s attempt: a poll every 100 ms cannot miss it, and stays within a deployment's read limit.
	err := eventually.WaitEvery(30*time.Second, 100*time.Millisecond, func() error {
		resp, body := do(t, "GET", "/api/jobs/"+j.ID, bearer(tok), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("poll: %d %s", resp.StatusCode, body)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		status, _ := got["status"].(string)
		if _, ok := seen[status]; !ok {
			seen[status] = got
		}
		if status != "COMPLETED" && status != "FAILED" {
			return fmt.Errorf("still %s", status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("job not finished within 30 s: %v (saw %v)", err, keys(seen))
	}
	p, ok := seen["PROCESSING"]
	if !ok {
		t.Fatalf("never saw PROCESSING; saw %v", keys(seen))
	}
	if p["attempts"] != float64(1) || p["startedAt"] == nil || p["result"] != nil || p["error"] != nil || p["completedAt"] != nil {
		t.Errorf("while running: %v", p)
	}
	if c, ok := seen["COMPLETED"]; !ok || c["attempts"] != float64(1) {
		t.Errorf("final: %v (saw %v)", c, keys(seen))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
