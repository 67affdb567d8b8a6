package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

var (
	// binary is the jobsd these tests run as real processes (and kill):
	// the one of this test run (proctest.Binary).
	binary string
	// scratch is a folder for what the tests build (the Lambda emulator),
	// removed at the end.
	scratch string
)

func TestMain(m *testing.M) {
	var err error
	if binary, err = proctest.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if scratch, err = os.MkdirTemp("", "jobsd-cmd-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(scratch)
	os.Exit(code)
}

// startWorker runs `jobsd worker` with second-scale leases, ready once its
// /readyz says so; the tests that run one (killed, SIGTERMed, parsing
// hostile documents) skip under -short.
func startWorker(t *testing.T, url string, extraEnv ...string) *proctest.Process {
	t.Helper()
	proctest.SkipShort(t, "worker process")
	env := append([]string{
		"DATABASE_URL=" + url,
		"JOBS_MODEL_PROVIDER=local",
		"JOBS_WORKER_LEASE=1s",
		"JOBS_WORKER_HEARTBEAT=200ms",
		"JOBS_WORKER_RESCUE_EVERY=200ms",
		"JOBS_WORKER_BACKOFF_BASE=50ms",
		"JOBS_WORKER_BACKOFF_MAX=100ms",
		"JOBS_LOG_LEVEL=warn",
	}, extraEnv...)
	o := proctest.Options{Binary: binary, Env: env}
	if testing.Verbose() {
		o.Echo = os.Stderr
	}
	return proctest.Worker(t, o)
}

func createPreview(t *testing.T, st *store.Store, prompt string) uuid.UUID {
	t.Helper()
	j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: fmt.Appendf(nil, `{"prompt":%q}`, prompt)})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func waitJob(t *testing.T, st *store.Store, id uuid.UUID, what string, cond func(*job.Job) bool) *job.Job {
	t.Helper()
	var j *job.Job
	eventually.NoError(t, 30*time.Second, "job "+what, func() error {
		var err error
		if j, err = st.Get(context.Background(), store.OwnedBy("alice"), id); err != nil {
			t.Fatal(err)
		}
		if !cond(j) {
			return fmt.Errorf("job is %+v", j)
		}
		return nil
	})
	return j
}

// TestWorkerKilled: a worker process SIGKILLed mid-job loses nothing: the
// job's lease expires, another worker process completes it with attempts 2.
func TestWorkerKilled(t *testing.T) {
	st, url := pgtest.NewStore(t)
	id := createPreview(t, st, "[[simulate:slow=3s]] The harvest was late. Prices fell sharply in March.")
	first := startWorker(t, url)
	waitJob(t, st, id, "started", func(j *job.Job) bool { return j.Status == job.StatusProcessing && j.Attempts == 1 })
	first.Kill()

	startWorker(t, url)
	j := waitJob(t, st, id, "terminal", func(j *job.Job) bool { return j.Status.Terminal() })
	if j.Status != job.StatusCompleted || j.Attempts != 2 {
		t.Errorf("after the crash: %s attempts %d error %v", j.Status, j.Attempts, j.Error)
	}
}

// TestWorkerKilledRepeatedly: every worker dies mid-job, three times in a
// row; the job still ends, FAILED "Worker lost" after its last attempt.
func TestWorkerKilledRepeatedly(t *testing.T) {
	st, url := pgtest.NewStore(t)
	id := createPreview(t, st, "[[simulate:slow=30s]] never finishes")
	for attempt := 1; attempt <= 3; attempt++ {
		w := startWorker(t, url)
		waitJob(t, st, id, fmt.Sprintf("on attempt %d", attempt), func(j *job.Job) bool {
			return j.Status == job.StatusProcessing && j.Attempts == attempt
		})
		w.Kill()
	}
	// The rescuer of a live worker ends it.
	startWorker(t, url)
	j := waitJob(t, st, id, "terminal", func(j *job.Job) bool { return j.Status.Terminal() })
	if j.Status != job.StatusFailed || j.Attempts != 3 || j.Error == nil || *j.Error != job.ErrTextWorkerLost {
		t.Errorf("job %s attempts %d error %v", j.Status, j.Attempts, j.Error)
	}
}

// TestWorkerSIGTERM: SIGTERM stops claiming, waits for in-flight jobs up to
// the grace period, hands the rest back without burning their attempt (a
// first attempt handed back is PENDING again, startedAt null), and exits 0.
func TestWorkerSIGTERM(t *testing.T) {
	st, url := pgtest.NewStore(t)
	quick := createPreview(t, st, "[[simulate:slow=300ms]] finishes within the grace period")
	slow := createPreview(t, st, "[[simulate:slow=30s]] does not")
	w := startWorker(t, url, "JOBS_WORKER_SHUTDOWN_WAIT=1s")
	waitJob(t, st, slow, "started", func(j *job.Job) bool { return j.Attempts == 1 })
	waitJob(t, st, quick, "started", func(j *job.Job) bool { return j.Attempts == 1 })
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := w.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Errorf("worker exited with %v", err)
	}
	if j, _ := st.Get(t.Context(), store.OwnedBy("alice"), quick); j.Status != job.StatusCompleted || j.Attempts != 1 {
		t.Errorf("in-flight job not finished: %s attempts %d", j.Status, j.Attempts)
	}
	j, _ := st.Get(t.Context(), store.OwnedBy("alice"), slow)
	var lease sql.NullString
	if err := st.DB().Get(&lease, `SELECT lease_owner FROM jobs WHERE id = $1`, slow); err != nil {
		t.Fatal(err)
	}
	if j.Status != job.StatusPending || j.Attempts != 0 || lease.Valid || j.StartedAt != nil {
		t.Errorf("slow job not handed back: %s attempts %d lease %v", j.Status, j.Attempts, lease)
	}
}
