package jobtype

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/sandbox"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// TestWorkerHostileDocuments runs a real worker with the real handlers: while
// hostile documents hold both parse slots until they are killed, the same
// worker completes ordinary jobs, and the hostile jobs end FAILED after one
// attempt with their permanent error, within their budget.
func TestWorkerHostileDocuments(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile documents through a worker do not run under -short")
	}
	startPostgres(t)
	st, url := pgtest.NewStore(t)
	const budget = 4 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	w, err := worker.New(worker.Config{
		Store:       st,
		Handlers:    WorkerHandlers(st, model.NewLocal(), ParseOptions{Timeout: budget, Memory: testParseMemory, Concurrency: 2, Log: log}),
		Classify:    Classify,
		Log:         log,
		ListenURL:   url,
		Concurrency: 8,
		JobTimeout:  time.Minute,
		PollEvery:   500 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	defer func() {
		stop()
		<-done
		if kids := sandbox.Children(); len(kids) > 0 {
			t.Errorf("child processes left after the worker stopped: %v", kids)
		}
	}()

	create := func(typ job.Type, input any) uuid.UUID {
		raw, err := json.Marshal(input)
		if err != nil {
			t.Fatal(err)
		}
		j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: typ, Input: raw})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	parse := func(doc []byte, ct string) uuid.UUID {
		return create(job.TypeParseDocument, map[string]any{"document": doc, "contentType": ct})
	}
	// Two that run until they are stopped (they hold both parse slots for
	// most of the test), two that fail at once.
	start := time.Now()
	hostile := map[uuid.UUID]string{
		parse(selfReferencing, ContentTypePDF):         ParseLimitsMessage,
		parse(selfReferencingPDF(), ContentTypePDF):    ParseLimitsMessage,
		parse(billionLaughsDOCX(t), ContentTypeDOCX):   `Invalid input: field "document" is not a readable DOCX file`,
		parse([]byte("caf\xe9 \xff"), ContentTypeText): `Invalid input: field "document" is not a readable text file`,
	}
	waitForChild(t)
	var normal []uuid.UUID
	for range 20 {
		normal = append(normal, create(job.TypeAIPreview, map[string]any{"prompt": "Summarise the risks for {{crop}} farmers", "variables": map[string]string{"crop": "maize"}}))
	}
	normal = append(normal, parse(buildPDF([][]string{{"Quarterly report", "Revenue grew."}}), ContentTypePDF))

	wait := func(id uuid.UUID) *job.Job {
		var j *job.Job
		eventually.NoError(t, 2*budget+10*time.Second, "job "+id.String()+" finished", func() error {
			var err error
			if j, err = st.Get(context.Background(), store.OwnedBy("alice"), id); err != nil {
				t.Fatal(err)
			}
			if !j.Status.Terminal() {
				return fmt.Errorf("%s job still %s", j.Type, j.Status)
			}
			return nil
		})
		return j
	}
	var lastNormal time.Time
	for _, id := range normal {
		j := wait(id)
		if j.Status != job.StatusCompleted {
			t.Errorf("%s job %s: %s, error %v", j.Type, id, j.Status, deref(j.Error))
			continue
		}
		if j.Type == job.TypeAIPreview { // the PDF waits for a parse slot
			lastNormal = maxTime(lastNormal, *j.CompletedAt)
		}
	}
	t.Logf("20 AI previews COMPLETED within %v of the first hostile job's creation", lastNormal.Sub(start).Round(time.Millisecond))
	for id, msg := range hostile {
		j := wait(id)
		if j.Status != job.StatusFailed || deref(j.Error) != msg || j.Attempts != 1 {
			t.Errorf("hostile job %s: %s after %d attempts, error %q; want FAILED after 1 with %q", id, j.Status, j.Attempts, deref(j.Error), msg)
			continue
		}
		took := j.CompletedAt.Sub(j.CreatedAt)
		if took > 2*budget+5*time.Second {
			t.Errorf("hostile job %s FAILED %v after it was created (budget %v)", id, took, budget)
		}
		if msg == ParseLimitsMessage && !j.CompletedAt.After(lastNormal) {
			t.Errorf("a hostile parse ended at %v, before the last ordinary job (%v): nothing shows the worker kept working meanwhile", j.CompletedAt, lastNormal)
		}
		t.Logf("hostile job FAILED %v after creation: %s", took.Round(time.Millisecond), msg)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
