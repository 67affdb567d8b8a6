package conformance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
)

// adminJob is the AdminJob schema, as a client reads it.
type adminJob struct {
	Job          map[string]any `json:"job"`
	UserID       string         `json:"userId"`
	WorkerID     *string        `json:"workerId"`
	CancelledBy  *string        `json:"cancelledBy"`
	RequeuedFrom *string        `json:"requeuedFrom"`
	RequeuedAs   *string        `json:"requeuedAs"`
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// adminRoutes are every operation of the operator's API, each with a
// request that would be malformed for an admin (a bad id, a bad body), so
// that a 403 proves the refusal came first.
var adminRoutes = []struct{ method, path, body string }{
	{"GET", "/api/admin/jobs?limit=0", ""},
	{"GET", "/api/admin/jobs/not-a-uuid", ""},
	{"GET", "/api/admin/jobs/not-a-uuid/attempts", ""},
	{"GET", "/api/admin/jobs/not-a-uuid/events", ""},
	{"POST", "/api/admin/jobs/not-a-uuid/cancel", ""},
	{"POST", "/api/admin/jobs/not-a-uuid/requeue", ""},
	{"POST", "/api/admin/requeue", `{"nope":1}`},
	{"GET", "/api/admin/stats", ""},
	{"GET", "/api/admin/workers", ""},
	{"POST", "/api/admin/prompts/preview", `{}`},
	{"GET", "/api/admin/webhooks?limit=0", ""},
	{"GET", "/api/admin/webhooks/not-a-uuid/deliveries", ""},
	{"POST", "/api/admin/webhooks/not-a-uuid/deliveries/not-a-uuid/replay", ""},
}

// TestAdminForbidden: a signed-in non-admin gets 403 "Admin access
// required" from every admin operation, before its id or body is looked at;
// without a token it is the usual 401.
func TestAdminForbidden(t *testing.T) {
	requireInProcess(t) // black-box mode has one token, an admin's
	tok := token(t, newUser(t), false)
	for _, r := range adminRoutes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			var body []byte
			h := bearer(tok)
			if r.body != "" {
				body = []byte(r.body)
				h = jsonHeader(tok)
			}
			resp, got := do(t, r.method, r.path, h, body)
			if resp.StatusCode != http.StatusForbidden || errorMessage(t, got) != "Admin access required" {
				t.Errorf("non-admin: %d %s", resp.StatusCode, got)
			}
			if resp, _ := do(t, r.method, r.path, nil, body); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("no token: %d", resp.StatusCode)
			}
		})
	}
}

// TestAdminJob: an admin reads any user's job (the documented Job, plus its
// owner), finds it in the list by user, reads its attempts, and cancels it;
// the owner sees the cancellation. Unknown and malformed ids get their
// documented errors.
func TestAdminJob(t *testing.T) {
	requireCreate(t)
	owner := newUser(t)
	ownerTok := token(t, owner, false)
	adminTok := token(t, "admin-"+uuid.NewString(), true)
	if env.blackBox {
		owner, ownerTok = "", adminTok // one token: the admin reads its own job
	}
	j := create(t, "/api/jobs", jsonHeader(ownerTok),
		`{"type":"RISK_ANALYSIS","input":{"text":"[[simulate:slow=20s]] A maize farm in a dry year."}}`)

	resp, body := do(t, "GET", "/api/admin/jobs/"+j.ID, bearer(adminTok), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin get: %d %s", resp.StatusCode, body)
	}
	got := decode[adminJob](t, body)
	if got.Job["id"] != j.ID || got.Job["type"] != "RISK_ANALYSIS" || (owner != "" && got.UserID != owner) ||
		got.CancelledBy != nil || got.RequeuedFrom != nil || got.RequeuedAs != nil {
		t.Errorf("admin view: %s", body)
	}

	resp, body = do(t, "GET", "/api/admin/jobs?limit=5&type=RISK_ANALYSIS&userId="+got.UserID, bearer(adminTok), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin list: %d %s", resp.StatusCode, body)
	}
	page := decode[struct {
		Jobs []adminJob `json:"jobs"`
	}](t, body)
	if len(page.Jobs) == 0 || page.Jobs[0].Job["id"] != j.ID {
		t.Errorf("the owner's newest job is not first in the admin list: %s", body)
	}
	for _, a := range page.Jobs {
		if a.UserID != got.UserID || a.Job["type"] != "RISK_ANALYSIS" {
			t.Errorf("filtered list holds %s's %v job", a.UserID, a.Job["type"])
		}
	}

	resp, body = do(t, "POST", "/api/admin/jobs/"+j.ID+"/cancel", bearer(adminTok), nil)
	if env.blackBox && resp.StatusCode == http.StatusConflict {
		t.Skipf("the deployment finished the job before it could be cancelled: %s", body)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin cancel: %d %s", resp.StatusCode, body)
	}
	cancelled := decode[adminJob](t, body)
	if cancelled.Job["status"] != "FAILED" || cancelled.Job["error"] != "Cancelled by an administrator" || cancelled.CancelledBy == nil {
		t.Errorf("cancelled: %s", body)
	}
	_, polled := do(t, "GET", "/api/jobs/"+j.ID, bearer(ownerTok), nil)
	if p := decode[map[string]any](t, polled); p["status"] != "FAILED" || p["error"] != "Cancelled by an administrator" {
		t.Errorf("the owner's poll after an admin's cancel: %s", polled)
	}
	if resp, body := do(t, "POST", "/api/admin/jobs/"+j.ID+"/cancel", bearer(adminTok), nil); resp.StatusCode != http.StatusConflict || errorMessage(t, body) != "Job has already finished" {
		t.Errorf("second cancel: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", "/api/admin/jobs/"+j.ID+"/attempts", bearer(adminTok), nil)
	attempts := decode[struct {
		Attempts []map[string]any `json:"attempts"`
	}](t, body)
	if resp.StatusCode != http.StatusOK || len(attempts.Attempts) == 0 || attempts.Attempts[len(attempts.Attempts)-1]["outcome"] != "cancelled" {
		t.Errorf("attempts: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "POST", "/api/admin/jobs/"+j.ID+"/requeue", bearer(adminTok), nil); resp.StatusCode != http.StatusConflict || errorMessage(t, body) != "A cancelled job is never requeued" {
		t.Errorf("requeue of a cancelled job: %d %s", resp.StatusCode, body)
	}

	for _, path := range []string{"", "/attempts", "/events"} {
		resp, body := do(t, "GET", "/api/admin/jobs/"+uuid.NewString()+path, bearer(adminTok), nil)
		if resp.StatusCode != http.StatusNotFound || errorMessage(t, body) != "Job not found" {
			t.Errorf("unknown id%s: %d %s", path, resp.StatusCode, body)
		}
		resp, body = do(t, "GET", "/api/admin/jobs/%7Bnope%7D"+path, bearer(adminTok), nil)
		if resp.StatusCode != http.StatusBadRequest || errorMessage(t, body) != "Invalid UUID format" {
			t.Errorf("malformed id%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// failedJob returns a FAILED job of the token's user: made so by the
// database in-process (no worker runs there), by the local provider's
// permanent-failure marker in black-box mode.
func failedJob(t *testing.T, tok string) string {
	t.Helper()
	if env.blackBox && os.Getenv("CONFORMANCE_PROVIDER") != "local" {
		t.Skip("needs a FAILED job: black-box mode with CONFORMANCE_PROVIDER=local")
	}
	j := create(t, "/api/jobs", jsonHeader(tok), `{"type":"RISK_ANALYSIS","input":{"text":"[[simulate:permanent]] A dry year."}}`)
	if !env.blackBox {
		if _, err := env.db.Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1)
			UPDATE jobs SET status = 'FAILED', error = 'Bedrock API error: ValidationException - bad input',
			attempts = 1, started_at = now(), completed_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, j.ID); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	// A poll every 100 ms: within a deployment's read limit.
	err := eventually.WaitEvery(30*time.Second, 100*time.Millisecond, func() error {
		_, body := do(t, "GET", "/api/jobs/"+j.ID, bearer(tok), nil)
		status := decode[map[string]any](t, body)["status"]
		switch status {
		case "FAILED":
			return nil
		case "COMPLETED":
			t.Fatalf("the permanent-failure job completed: %s", body)
		}
		return fmt.Errorf("status %v", status)
	})
	if err != nil {
		t.Fatalf("the permanent-failure job did not fail within 30 s: %v", err)
	}
	return j.ID
}

// TestAdminRequeue: a FAILED job is requeued as a new PENDING job of the
// same user and type, linked both ways; the original is unchanged; a second
// requeue is a 409; requeue by filter counts in a dry run.
func TestAdminRequeue(t *testing.T) {
	requireCreate(t)
	user := newUser(t)
	userTok := token(t, user, false)
	adminTok := token(t, "admin-"+uuid.NewString(), true)
	if env.blackBox {
		userTok = adminTok
	}
	id := failedJob(t, userTok)
	_, before := do(t, "GET", "/api/jobs/"+id, bearer(userTok), nil)

	if !env.blackBox {
		dry := `{"failedAfter":"` + time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05.000Z") + `","userId":"` + user + `","dryRun":true}`
		resp, body := do(t, "POST", "/api/admin/requeue", jsonHeader(adminTok), []byte(dry))
		res := decode[struct {
			Matched  int        `json:"matched"`
			Requeued []adminJob `json:"requeued"`
		}](t, body)
		if resp.StatusCode != http.StatusOK || res.Matched != 0 || len(res.Requeued) != 0 {
			// In-process, the failure was written by hand, without the
			// attempt log entry through which failures are found.
			t.Errorf("dry run over a failure with no attempt log: %d %s", resp.StatusCode, body)
		}
	}

	resp, body := do(t, "POST", "/api/admin/jobs/"+id+"/requeue", bearer(adminTok), nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("requeue: %d %s", resp.StatusCode, body)
	}
	again := decode[adminJob](t, body)
	newID, _ := again.Job["id"].(string)
	if newID == id || again.Job["type"] != "RISK_ANALYSIS" || again.RequeuedFrom == nil || *again.RequeuedFrom != id ||
		resp.Header.Get("Location") != "/api/admin/jobs/"+newID {
		t.Errorf("requeued: Location %q, %s", resp.Header.Get("Location"), body)
	}
	if !env.blackBox && (again.Job["status"] != "PENDING" || again.UserID != user) {
		t.Errorf("requeued job: %s", body)
	}
	_, after := do(t, "GET", "/api/jobs/"+id, bearer(userTok), nil)
	if string(after) != string(before) {
		t.Errorf("the original changed:\n%s\n%s", before, after)
	}
	_, body = do(t, "GET", "/api/admin/jobs/"+id, bearer(adminTok), nil)
	if orig := decode[adminJob](t, body); orig.RequeuedAs == nil || *orig.RequeuedAs != newID {
		t.Errorf("the original does not link to its requeue: %s", body)
	}
	if _, body := do(t, "GET", "/api/jobs/"+newID, bearer(userTok), nil); !strings.Contains(string(body), newID) {
		t.Errorf("the owner cannot poll the requeued job: %s", body)
	}
	resp, body = do(t, "POST", "/api/admin/jobs/"+id+"/requeue", bearer(adminTok), nil)
	if resp.StatusCode != http.StatusConflict || errorMessage(t, body) != "Job was already requeued" {
		t.Errorf("second requeue: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", "/api/admin/requeue", jsonHeader(adminTok), []byte(`{"failedAfter":"yesterday"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("requeue by filter with a bad time: %d %s", resp.StatusCode, body)
	}
}

// TestAdminStats: the stats and workers answer in their documented shape
// (checked against openapi.yaml by every request here), with an hour of
// minutes.
func TestAdminStats(t *testing.T) {
	tok := token(t, "admin-"+uuid.NewString(), true)
	resp, body := do(t, "GET", "/api/admin/stats", bearer(tok), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stats: %d %s", resp.StatusCode, body)
	}
	st := decode[struct {
		PerMinute []struct {
			Minute string `json:"minute"`
		} `json:"perMinute"`
	}](t, body)
	if len(st.PerMinute) != 60 {
		t.Errorf("%d minutes, want 60", len(st.PerMinute))
	}
	resp, body = do(t, "GET", "/api/admin/workers", bearer(tok), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("workers: %d %s", resp.StatusCode, body)
	}
	workers := decode[struct {
		Workers []map[string]any `json:"workers"`
	}](t, body)
	if env.blackBox && os.Getenv("CONFORMANCE_PROVIDER") == "local" && len(workers.Workers) == 0 {
		t.Errorf("a deployment that runs jobs lists no worker: %s", body)
	}
}

// TestFinishedStreamReconnect: a reconnect with the last event id of a
// finished job is a bodiless 204, which stops an EventSource, on the
// owner's and the admin's stream; an older id still gets the final event.
func TestFinishedStreamReconnect(t *testing.T) {
	requireInProcess(t)
	tok, id := pendingJob(t)
	advance(t, id, "PROCESSING")
	advance(t, id, "COMPLETED")
	resp, _ := do(t, "GET", "/api/jobs/"+id, bearer(tok), nil)
	etag := resp.Header.Get("ETag")
	for _, path := range []string{"/api/jobs/" + id + "/events", "/api/admin/jobs/" + id + "/events"} {
		h := bearer(tok)
		h.Set("Last-Event-ID", etag)
		resp, body := do(t, "GET", path, h, nil)
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Errorf("%s with the last id: %d %q", path, resp.StatusCode, body)
		}
		h.Set("Last-Event-ID", `"v1"`)
		resp, body = do(t, "GET", path, h, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"COMPLETED"`) {
			t.Errorf("%s with an older id: %d %s", path, resp.StatusCode, body)
		}
	}
}
