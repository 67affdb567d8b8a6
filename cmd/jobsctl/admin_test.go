package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
)

// TestAdminCommands: the operator's commands against the real API and
// worker: a job that fails for good is found, read with its attempts,
// requeued once, and counted by requeue-failed; stats and workers answer.
func TestAdminCommands(t *testing.T) {
	code, out, errOut := jobsctl(t, "wait", "-q", strings.TrimSpace(mustRun(t, "create", "risk", "-q", "--input-json", `{"text":"A dry year. [[simulate:permanent]]"}`)))
	if code != 1 {
		t.Fatalf("wait for the failing job: exit %d\n%s\n%s", code, out, errOut)
	}
	failed := decodeJob(t, out)
	id := failed.Id.String()

	var a gen.AdminJob
	if err := json.Unmarshal([]byte(mustRun(t, "admin", "get", id)), &a); err != nil || a.Job.Id != failed.Id || a.Job.Status != gen.FAILED || a.WorkerId == nil {
		t.Fatalf("admin get: %+v, %v", a, err)
	}
	var attempts gen.AttemptList
	if err := json.Unmarshal([]byte(mustRun(t, "admin", "attempts", id)), &attempts); err != nil || len(attempts.Attempts) != 1 ||
		attempts.Attempts[0].Outcome != "failed" || attempts.Attempts[0].Error == nil {
		t.Errorf("admin attempts: %+v, %v", attempts, err)
	}
	if list := mustRun(t, "admin", "list", "--user", a.UserId, "--status", "failed", "--since", "1h"); !strings.Contains(list, id) || !strings.Contains(list, a.UserId) {
		t.Errorf("admin list does not show the job:\n%s", list)
	}

	var res gen.RequeueResult
	if err := json.Unmarshal([]byte(mustRun(t, "admin", "requeue-failed", "--since", "1h", "--user", a.UserId, "--error-contains", "ValidationException", "--dry-run")), &res); err != nil || res.Matched < 1 || len(res.Requeued) != 0 {
		t.Errorf("dry run: %+v, %v", res, err)
	}
	var again gen.AdminJob
	if err := json.Unmarshal([]byte(mustRun(t, "admin", "requeue", id)), &again); err != nil || again.RequeuedFrom == nil || again.RequeuedFrom.String() != id {
		t.Fatalf("admin requeue: %+v, %v", again, err)
	}
	if code, _, errOut := jobsctl(t, "admin", "requeue", id); code != 3 || !strings.Contains(errOut, "Job was already requeued") {
		t.Errorf("second requeue: exit %d, %q", code, errOut)
	}
	if code, _, errOut := jobsctl(t, "admin", "cancel", uuid.NewString()); code != 3 || !strings.Contains(errOut, "Job not found") {
		t.Errorf("cancel of an unknown job: exit %d, %q", code, errOut)
	}

	var st gen.AdminStats
	if err := json.Unmarshal([]byte(mustRun(t, "admin", "stats")), &st); err != nil || len(st.PerMinute) != 60 {
		t.Errorf("admin stats: %+v, %v", st, err)
	}
	if ws := mustRun(t, "admin", "workers"); strings.Count(strings.TrimSpace(ws), "\n") < 1 {
		t.Errorf("admin workers lists no worker:\n%s", ws)
	}
	if code, _, _ := jobsctl(t, "admin", "frobnicate"); code != exitUsage {
		t.Errorf("unknown admin command: exit %d", code)
	}
	if code, _, _ := jobsctl(t, "admin", "requeue-failed"); code != exitUsage {
		t.Errorf("requeue-failed without --since: exit %d", code)
	}
}
