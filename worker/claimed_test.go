package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// TestRunClaimed: attempts claimed by id run with the worker's own rules.
// One completes; one that ignores its deadline is abandoned by the
// watchdog and written as a retry (counted, fenced); a job that is not
// runnable is not claimed; RunClaimed returns once every attempt ended,
// while the stuck handler is still running.
func TestRunClaimed(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := setup(t, func(ctx context.Context, j worker.Attempt) (json.RawMessage, error) {
		var in struct{ Prompt string }
		if err := json.Unmarshal(j.Input, &in); err != nil {
			return nil, err
		}
		if in.Prompt == "stuck" {
			<-release // ignores ctx
		}
		return json.RawMessage(`{"ok":true}`), nil
	})
	b.cfg.JobTimeout, b.cfg.Grace = 200*time.Millisecond, 200*time.Millisecond
	ok := b.create(t, 3)
	stuck, _, err := b.st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"stuck"}`)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := w.ClaimIDs(t.Context(), []uuid.UUID{ok, stuck.ID, uuid.New()})
	if err != nil || len(claims) != 2 {
		t.Fatalf("claimed %d, %v; want 2", len(claims), err)
	}
	ended := map[uuid.UUID]worker.Ended{}
	for _, e := range w.RunClaimed(t.Context(), claims) {
		ended[e.Claim.ID] = e
	}
	if e := ended[ok]; !e.Written || e.Outcome.Kind != store.OutcomeCompleted {
		t.Errorf("ok job ended %+v", e)
	}
	if e := ended[stuck.ID]; !e.Written || e.Outcome.Kind != store.OutcomeRetry || e.Outcome.Backoff <= 0 {
		t.Errorf("stuck job ended %+v, want a written retry", e)
	}
	j, err := b.st.Get(t.Context(), store.OwnedBy("alice"), stuck.ID)
	if err != nil || j.Status != job.StatusProcessing || j.Attempts != 1 {
		t.Errorf("stuck job: %+v, %v", j, err)
	}
}
