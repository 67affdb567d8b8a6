package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/apitest"
	"github.com/jobsd/jobsd/internal/sandbox"
)

var srv *apitest.Server

// TestMain starts the real API and a worker with the local model provider;
// JOBS_URL and JOBS_TOKEN (an admin's) point jobsctl at them.
func TestMain(m *testing.M) {
	sandbox.Main() // the worker's PDF and DOCX parses re-execute this binary
	os.Exit(apitest.Main(m, &srv))
}

// jobsctl runs the CLI and returns its exit status, stdout and stderr.
func jobsctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := jobsctl(t, args...)
	if code != 0 {
		t.Fatalf("jobsctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func decodeJob(t *testing.T, s string) gen.Job {
	t.Helper()
	var j gen.Job
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		t.Fatalf("not a job: %v\n%s", err, s)
	}
	return j
}

func TestPreviewThenWait(t *testing.T) {
	id := strings.TrimSpace(mustRun(t, "create", "preview", "-q",
		"--prompt", "Summarise the market risks for {{crop}} farmers. Prices are volatile.", "--var", "crop=maize"))
	code, out, errOut := jobsctl(t, "wait", id, "--timeout", "1m")
	if code != 0 {
		t.Fatalf("wait: exit %d\n%s\n%s", code, out, errOut)
	}
	j := decodeJob(t, out)
	if j.Status != gen.COMPLETED || j.Id.String() != id || j.Result == nil || !strings.Contains(string(*j.Result), `"output"`) {
		t.Errorf("job %s", out)
	}
	// stderr is not a terminal: one plain line per change, the last COMPLETED.
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "COMPLETED") || !strings.Contains(last, "attempts 1") || strings.Contains(errOut, "\r") {
		t.Errorf("progress on stderr: %q", errOut)
	}
	// get prints the same job.
	if g := decodeJob(t, mustRun(t, "get", id)); g.Status != gen.COMPLETED {
		t.Errorf("get: %+v", g)
	}
}

func TestWaitFailedJob(t *testing.T) {
	created := decodeJob(t, mustRun(t, "create", "preview", "--prompt", "Summarise. [[simulate:throttle]]", "--idempotency-key", "cli-throttle-"+uuid.NewString()))
	if created.Status != gen.PENDING {
		t.Errorf("created %+v", created)
	}
	code, out, errOut := jobsctl(t, "wait", "-q", created.Id.String())
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "Bedrock API error: ThrottlingException - Rate exceeded") || !strings.Contains(errOut, "after 3 attempt(s)") {
		t.Errorf("stderr %q", errOut)
	}
	if j := decodeJob(t, out); j.Status != gen.FAILED || j.Attempts != 3 {
		t.Errorf("job %s", out)
	}
}

func TestAPIErrorsExit3(t *testing.T) {
	code, out, errOut := jobsctl(t, "get", "550e8400-e29b-41d4-a716-446655440000")
	if code != 3 || out != "" || !strings.Contains(errOut, "Job not found or does not belong to the requesting user") {
		t.Errorf("get unknown: exit %d stdout %q stderr %q", code, out, errOut)
	}
	code, _, errOut = jobsctl(t, "--token", "bogus", "list")
	if code != 3 || !strings.Contains(errOut, "Missing or invalid Bearer token") {
		t.Errorf("bad token: exit %d stderr %q", code, errOut)
	}
	code, _, errOut = jobsctl(t, "create", "gap", "--input-json", `{"text":"x"}`)
	if code != 3 || !strings.Contains(errOut, "400 Bad Request") || !strings.Contains(errOut, "requirements") {
		t.Errorf("bad body: exit %d stderr %q", code, errOut)
	}
	code, _, errOut = jobsctl(t, "--url", "http://127.0.0.1:1", "get", "550e8400-e29b-41d4-a716-446655440000")
	if code != 3 || errOut == "" {
		t.Errorf("unreachable: exit %d stderr %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--bogus", "list"},
		{"get"},
		{"get", "not-a-uuid"},
		{"get", "550e8400-e29b-41d4-a716-446655440000", "extra"},
		{"wait", "550e8400-e29b-41d4-a716-446655440000", "--timeout", "soon"},
		{"create"},
		{"create", "nonsense"},
		{"create", "preview"},
		{"create", "risk"},
		{"create", "risk", "--input-json", "[1,2]"},
		{"create", "risk", "--input-json", "{}", "--input", "x.json"},
		{"create", "parse", "--file", "doc.xyz"},
		{"list", "--status", "DONE"},
		{"list", "--type", "nonsense"},
	} {
		code, _, errOut := jobsctl(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("jobsctl %q: exit %d stderr %q, want 2 and a message", args, code, errOut)
		}
	}
	for _, args := range [][]string{{"-h"}, {"get", "-h"}, {"create", "-h"}, {"create", "parse", "-h"}, {"wait", "--help"}} {
		code, _, errOut := jobsctl(t, args...)
		if code != 0 || !strings.Contains(errOut, "Usage:") {
			t.Errorf("jobsctl %q: exit %d stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := jobsctl(t, "help"); code != 0 || !strings.Contains(out, "Commands:") {
		t.Errorf("help: exit %d", code)
	}
}

func TestCreateListCancel(t *testing.T) {
	tok, err := srv.Token("cli-lister-"+uuid.NewString(), false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "plan.md")
	if err := os.WriteFile(md, []byte("# Plan\n\nSell maize in May.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := decodeJob(t, mustRun(t, "--token", tok, "create", "parse", "--file", md))
	if parse.Type != gen.JobTypePARSEDOCUMENT {
		t.Errorf("parse job %+v", parse)
	}
	done := decodeJob(t, mustRun(t, "--token", tok, "wait", "-q", parse.Id.String()))
	if done.Status != gen.COMPLETED || !strings.Contains(string(*done.Result), `"text/markdown"`) {
		t.Errorf("parsed %+v", done)
	}

	in := filepath.Join(dir, "risk.json")
	if err := os.WriteFile(in, []byte(`{"text":"Roads flood in April."}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "create", "RISK_ANALYSIS", "--input", in, "--token", tok)
	stdin = strings.NewReader(`{"text":"Prices are volatile. [[simulate:slow=30s]]"}`)
	defer func() { stdin = os.Stdin }()
	slow := decodeJob(t, mustRun(t, "create", "risk-analysis", "--input", "-", "--token", tok))

	out := mustRun(t, "list", "--all", "--limit", "1", "--token", tok)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], slow.Id.String()) || !strings.Contains(lines[3], "PARSE_DOCUMENT") {
		t.Errorf("list --all:\n%s", out)
	}
	code, out, errOut := jobsctl(t, "list", "--limit", "1", "--type", "risk", "--token", tok)
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errOut, "--cursor") {
		t.Errorf("list one page: exit %d\n%s\n%s", code, out, errOut)
	}

	c := decodeJob(t, mustRun(t, "cancel", slow.Id.String(), "--token", tok))
	if c.Status != gen.FAILED || c.Error == nil || *c.Error != "Cancelled by user" {
		t.Errorf("cancelled %+v", c)
	}
	code, _, errOut = jobsctl(t, "cancel", slow.Id.String(), "--token", tok)
	if code != 3 || !strings.Contains(errOut, "409 Conflict: Job has already finished") {
		t.Errorf("second cancel: exit %d stderr %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	out := mustRun(t, "version")
	if !strings.HasPrefix(out, "jobsctl ") || !strings.Contains(out, "\nmodule    github.com/jobsd/jobsd\n") || !strings.Contains(out, "\nrevision  ") {
		t.Errorf("version printed:\n%s", out)
	}
	if code, _, _ := jobsctl(t, "version", "extra"); code != exitUsage {
		t.Errorf("version with an argument: exit %d, want %d", code, exitUsage)
	}
}
