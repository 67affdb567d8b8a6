package conformance

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// TestCancel: the owner cancels a PENDING job (FAILED, "Cancelled by user",
// startedAt null); a second cancel is a 409; the 400/401/404 rules are those
// of the status endpoint.
func TestCancel(t *testing.T) {
	requireCreate(t)
	user := newUser(t)
	tok := token(t, user, true)
	// The in-process server runs no worker, so the job is still PENDING. A
	// deployment's worker may take it at once: the marker slows the local
	// model provider down; a real model may still finish first, which only
	// black-box mode tolerates (as a 409).
	j := create(t, "/api/admin/prompts/preview", jsonHeader(tok), `{"prompt":"cancel me [[simulate:slow=20s]]"}`)

	resp, body := do(t, "POST", "/api/jobs/"+j.ID+"/cancel", bearer(tok), nil)
	if env.blackBox && resp.StatusCode == http.StatusConflict {
		t.Skipf("the deployment finished the job before it could be cancelled: %s", body)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	startedOK := got["startedAt"] == nil || env.blackBox // a deployment's worker may have started it
	if got["status"] != "FAILED" || got["error"] != "Cancelled by user" || !startedOK || got["completedAt"] == nil || got["result"] != nil {
		t.Errorf("cancelled job: %s", body)
	}
	_, polled := do(t, "GET", "/api/jobs/"+j.ID, bearer(tok), nil)
	if !bytes.Equal(polled, body) {
		t.Errorf("poll after cancel differs:\n%s\n%s", polled, body)
	}

	resp, body = do(t, "POST", "/api/jobs/"+j.ID+"/cancel", bearer(tok), nil)
	if resp.StatusCode != http.StatusConflict || errorMessage(t, body) != "Job has already finished" {
		t.Errorf("second cancel: %d %s", resp.StatusCode, body)
	}

	t.Run("another user's job is not found", func(t *testing.T) {
		requireInProcess(t)
		otherTok := token(t, newUser(t), false)
		j := create(t, "/api/admin/prompts/preview", jsonHeader(tok), `{"prompt":"not yours"}`)
		_, theirs := do(t, "POST", "/api/jobs/"+j.ID+"/cancel", bearer(otherTok), nil)
		resp, none := do(t, "POST", "/api/jobs/"+uuid.NewString()+"/cancel", bearer(otherTok), nil)
		if resp.StatusCode != 404 || !bytes.Equal(theirs, none) {
			t.Errorf("404s differ or not 404 (%d): %s vs %s", resp.StatusCode, theirs, none)
		}
		_, still := do(t, "GET", "/api/jobs/"+j.ID, bearer(tok), nil)
		if !bytes.Contains(still, []byte(`"status":"PENDING"`)) {
			t.Errorf("another user cancelled the job: %s", still)
		}
	})
	t.Run("malformed id and missing token", func(t *testing.T) {
		if resp, body := do(t, "POST", "/api/jobs/%7Bnope%7D/cancel", bearer(tok), nil); resp.StatusCode != 400 || errorMessage(t, body) != "Invalid UUID format" {
			t.Errorf("malformed id: %d %s", resp.StatusCode, body)
		}
		if resp, _ := do(t, "POST", "/api/jobs/"+j.ID+"/cancel", nil, nil); resp.StatusCode != 401 {
			t.Errorf("no token: %d", resp.StatusCode)
		}
	})
}
