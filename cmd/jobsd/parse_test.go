package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/sandbox"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/jobtype"
	"github.com/jobsd/jobsd/store"
)

// selfReferencingPDF loops github.com/ledongthuc/pdf for ever.
func selfReferencingPDF(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../jobtype/testdata/hostile/pdf-self-referencing-page-tree.pdf")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createParse(t *testing.T, st *store.Store, doc []byte) uuid.UUID {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"document": doc, "contentType": jobtype.ContentTypePDF})
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeParseDocument, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// TestWorkerHostilePDF: the jobsd binary parses in a child of itself
// (sandbox.Main in main) under JOBS_PARSE_TIMEOUT; a PDF that loops the
// parser FAILED at once with the limits message, and ordinary jobs complete
// meanwhile.
func TestWorkerHostilePDF(t *testing.T) {
	st, url := pgtest.NewStore(t)
	hostile := createParse(t, st, selfReferencingPDF(t))
	startWorker(t, url, "JOBS_PARSE_TIMEOUT=2s", "JOBS_PARSE_MEMORY=256MiB")
	preview := createPreview(t, st, "Prices fell sharply in March.")
	if j := waitJob(t, st, preview, "terminal", func(j *job.Job) bool { return j.Status.Terminal() }); j.Status != job.StatusCompleted {
		t.Errorf("preview: %s %v", j.Status, j.Error)
	}
	j := waitJob(t, st, hostile, "terminal", func(j *job.Job) bool { return j.Status.Terminal() })
	if j.Status != job.StatusFailed || j.Attempts != 1 || j.Error == nil || *j.Error != jobtype.ParseLimitsMessage {
		t.Errorf("hostile PDF: %s after %d attempts, error %v", j.Status, j.Attempts, j.Error)
	}
	if took := j.CompletedAt.Sub(*j.StartedAt); took > 7*time.Second {
		t.Errorf("FAILED %v after it started (budget 2 s)", took)
	}
}

// TestWorkerKilledMidParse: a worker SIGKILLed while a parse runs takes its
// child with it (Pdeathsig), so no parser outlives its worker.
func TestWorkerKilledMidParse(t *testing.T) {
	st, url := pgtest.NewStore(t)
	id := createParse(t, st, selfReferencingPDF(t))
	w := startWorker(t, url, "JOBS_PARSE_TIMEOUT=5m")
	waitJob(t, st, id, "started", func(j *job.Job) bool { return j.Attempts == 1 })
	var child int
	eventually.True(t, 10*time.Second, "the worker's parse child started", func() bool {
		if kids := sandbox.ChildrenOf(w.Cmd.Process.Pid); len(kids) > 0 {
			child = kids[0]
		}
		return child != 0
	})
	w.Kill()
	eventually.True(t, 5*time.Second, fmt.Sprintf("parse child %d gone after its worker was killed", child), func() bool {
		return !sandbox.Running(child)
	})
}

func TestParseOptions(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    jobtype.ParseOptions
		wantErr string
	}{
		{"defaults", nil, jobtype.ParseOptions{Timeout: 30 * time.Second, Memory: 512 << 20, Concurrency: 2}, ""},
		{"set", map[string]string{"JOBS_PARSE_TIMEOUT": "5s", "JOBS_PARSE_MEMORY": "1GiB", "JOBS_PARSE_CONCURRENCY": "4"},
			jobtype.ParseOptions{Timeout: 5 * time.Second, Memory: 1 << 30, Concurrency: 4}, ""},
		{"bytes", map[string]string{"JOBS_PARSE_MEMORY": "100000000"}, jobtype.ParseOptions{Timeout: 30 * time.Second, Memory: 100000000, Concurrency: 2}, ""},
		{"zero timeout", map[string]string{"JOBS_PARSE_TIMEOUT": "0s"}, jobtype.ParseOptions{}, "JOBS_PARSE_TIMEOUT"},
		{"bad size", map[string]string{"JOBS_PARSE_MEMORY": "lots"}, jobtype.ParseOptions{}, "JOBS_PARSE_MEMORY"},
		{"tiny memory", map[string]string{"JOBS_PARSE_MEMORY": "1MiB"}, jobtype.ParseOptions{}, "JOBS_PARSE_MEMORY"},
		{"no slots", map[string]string{"JOBS_PARSE_CONCURRENCY": "0"}, jobtype.ParseOptions{}, "JOBS_PARSE_CONCURRENCY"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"JOBS_PARSE_TIMEOUT", "JOBS_PARSE_MEMORY", "JOBS_PARSE_CONCURRENCY"} {
				t.Setenv(k, c.env[k])
			}
			got, err := parseOptions(nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, cmpopts.IgnoreFields(jobtype.ParseOptions{}, "Log", "Observe")); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
