package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/internal/sqsfake"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// rieModule is the Lambda Runtime Interface Emulator, pinned: its tagged
// versions are not served by the module proxy, this pseudo-version is.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

var (
	rieOnce sync.Once
	riePath string
	rieErr  error
)

// rieBinary builds the emulator once per test binary (or takes
// JOBS_TEST_LAMBDA_RIE, a binary built before).
func rieBinary(t *testing.T) string {
	t.Helper()
	rieOnce.Do(func() {
		if p := os.Getenv("JOBS_TEST_LAMBDA_RIE"); p != "" {
			riePath = p
			return
		}
		cmd := exec.Command("go", "install", rieModule)
		cmd.Env = append(os.Environ(), "GOBIN="+scratch)
		if out, err := cmd.CombinedOutput(); err != nil {
			rieErr = fmt.Errorf("build the Lambda Runtime Interface Emulator: %w\n%s", err, out)
			return
		}
		riePath = filepath.Join(scratch, "aws-lambda-rie")
	})
	if rieErr != nil {
		t.Fatal(rieErr)
	}
	return riePath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// emulator is `jobsd lambda` running under the emulator, which serves
// Lambda's invoke API over HTTP and plays the Runtime API to the binary.
type emulator struct {
	url string
	cmd *exec.Cmd
}

// startEmulator runs the real binary as a Lambda function behind the
// emulator, with the function's timeout above the attempt's and extraEnv
// added to (and overriding) the test's settings.
func startEmulator(t *testing.T, dbURL string, q *sqsfake.Queue, extraEnv ...string) *emulator {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(rieBinary(t), "--runtime-interface-emulator-address", addr,
		"--runtime-api-address", freeAddr(t), binary, "lambda")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"JOBS_SQS_QUEUE_URL="+q.URL,
		"JOBS_SQS_ENDPOINT="+q.Endpoint(),
		"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=30",
		"JOBS_MODEL_PROVIDER=local",
		"JOBS_WORKER_CRASH_MARKERS=true",
		"JOBS_WORKER_LEASE=1s",
		"JOBS_WORKER_HEARTBEAT=200ms",
		"JOBS_WORKER_BACKOFF_BASE=100ms",
		"JOBS_WORKER_BACKOFF_MAX=200ms",
		"JOBS_WORKER_JOB_TIMEOUT=10s",
		"JOBS_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited already
		_ = cmd.Wait()         // "signal: killed", as asked
	})
	eventually.NoError(t, 20*time.Second, "the emulator listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return &emulator{url: "http://" + addr + "/2015-03-31/functions/function/invocations", cmd: cmd}
}

// invokeRaw posts an event and returns the function's answer. A function
// error (or a runtime that died mid-invocation) comes back as an error.
func (e *emulator) invokeRaw(ctx context.Context, event any) ([]byte, error) {
	payload, err := json.Marshal(event)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var fnErr struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	_ = json.Unmarshal(body, &fnErr) // a result that is not an error object leaves fnErr empty
	if resp.StatusCode != http.StatusOK || fnErr.ErrorType != "" || fnErr.ErrorMessage != "" {
		return nil, fmt.Errorf("invocation failed: %s: %s", resp.Status, body)
	}
	return body, nil
}

// invokeSQS is an sqsfake.Invoker: the SQS event through the emulator.
func (e *emulator) invokeSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	body, err := e.invokeRaw(ctx, ev)
	if err != nil {
		return events.SQSEventResponse{}, err
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return resp, fmt.Errorf("read response %s: %w", body, err)
	}
	return resp, nil
}

// scheduled is the event an EventBridge schedule sends.
var scheduled = map[string]any{
	"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
	"source": "aws.events", "account": "000000000000", "time": "2026-01-01T00:00:00Z",
	"region": "us-east-1", "resources": []string{"arn:aws:events:us-east-1:000000000000:rule/jobsd-maintain"}, "detail": map[string]any{},
}

// lambdaEnv is what each emulator test starts from: a database, a store on
// it, and the SQS fake with the template's maxReceiveCount (5, above
// max_attempts), each closed when the test ends.
func lambdaEnv(t *testing.T, opts store.Options) (dbURL string, st *store.Store, q *sqsfake.Queue) {
	t.Helper()
	proctest.SkipShort(t, "Lambda emulator")
	dbURL = pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), dbURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q = sqsfake.New()
	t.Cleanup(q.Close)
	q.MaxReceiveCount = 5
	return dbURL, st, q
}

// TestLambdaEmulator runs `jobsd lambda` under the Lambda Runtime
// Interface Emulator, fed by a wire-level SQS fake through a test-side
// event source mapping (batches of 10, ReportBatchItemFailures, visibility
// 2 s), with the schedule's event whenever the queue is idle. Jobs created
// with the outbox on end as they must: one completes; one that always
// fails retryably is re-sent with DelaySeconds and fails after exactly
// max_attempts attempts; one whose retry message the queue refuses is
// reported in batchItemFailures and goes on when the message comes back;
// one whose instance is killed mid-job (the runtime process dies) is
// rescued by the schedule and completes at attempt 2. No attempt count
// ever exceeds max_attempts, and nothing reaches the dead-letter queue.
func TestLambdaEmulator(t *testing.T) {
	dbURL, st, q := lambdaEnv(t, store.Options{Outbox: true})
	fn := startEmulator(t, dbURL, q)
	ctx := t.Context()

	ok := createPreview(t, st, "The harvest was late. Prices fell sharply in March.")
	failing := createPreview(t, st, "[[simulate:throttle]] always throttled")
	refused := createPreview(t, st, "[[simulate:throttle-once]] throttled once")
	crashed := createPreview(t, st, "[[simulate:crash-once]] the instance dies on attempt 1")
	all := []uuid.UUID{ok, failing, refused, crashed}

	// The schedule's round sends the outbox (the API would have, too).
	if _, err := fn.invokeRaw(ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	if got := len(q.Sent()); got != len(all) {
		t.Fatalf("the outbox sent %d messages, want %d", got, len(all))
	}
	q.Refuse(refused.String(), true)

	var failures []string // batchItemFailures, as message bodies
	bodies := map[string]string{}
	record := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		for _, r := range ev.Records {
			bodies[r.MessageId] = r.Body
		}
		resp, err := fn.invokeSQS(ctx, ev)
		for _, f := range resp.BatchItemFailures {
			failures = append(failures, bodies[f.ItemIdentifier])
			q.Refuse(refused.String(), false) // the queue is back for the redelivery
		}
		return resp, err
	}
	client := q.Client()
	deadline := time.Now().Add(90 * time.Second)
	for !allTerminal(t, st, all) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished: %v", jobStates(t, st, all))
		}
		// One job per batch keeps the crash to its own invocation.
		n, err := sqsfake.Poll(ctx, client, q.URL, 1, 2, record)
		if err != nil {
			t.Logf("event source mapping: %v", err) // a dead runtime; SQS delivers again
		}
		if n == 0 {
			if _, err := fn.invokeRaw(ctx, scheduled); err != nil {
				t.Logf("schedule: %v", err)
			}
		}
		checkAttempts(t, st, all)
	}

	want := map[uuid.UUID]struct {
		status   job.Status
		attempts int
	}{
		ok: {job.StatusCompleted, 1}, failing: {job.StatusFailed, 3},
		refused: {job.StatusCompleted, 2}, crashed: {job.StatusCompleted, 2},
	}
	for id, w := range want {
		j, err := st.Get(ctx, store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != w.status || j.Attempts != w.attempts {
			t.Errorf("job %v: %s after %d attempts (error %v), want %s after %d", id, j.Status, j.Attempts, j.Error, w.status, w.attempts)
		}
	}
	if len(failures) != 1 || failures[0] != refused.String() {
		t.Errorf("batchItemFailures for %v, want only the refused job %v", failures, refused)
	}
	var retries int
	for _, s := range q.Sent() {
		if s.Body == failing.String() && !s.Batch {
			retries++
			if s.DelaySeconds != 1 {
				t.Errorf("retry sent with DelaySeconds %d, want 1 (backoff 100-200 ms, rounded up)", s.DelaySeconds)
			}
		}
	}
	if retries != 2 {
		t.Errorf("the failing job was re-sent %d times, want 2 (after attempts 1 and 2)", retries)
	}
	if dead := q.DeadLetters(); len(dead) != 0 {
		t.Errorf("dead letters: %v", dead)
	}
}

func allTerminal(t *testing.T, st *store.Store, ids []uuid.UUID) bool {
	t.Helper()
	for _, id := range ids {
		j, err := st.Get(context.Background(), store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		if !j.Status.Terminal() {
			return false
		}
	}
	return true
}

func jobStates(t *testing.T, st *store.Store, ids []uuid.UUID) string {
	t.Helper()
	var parts []string
	for _, id := range ids {
		j, _ := st.Get(context.Background(), store.OwnedBy("alice"), id)
		parts = append(parts, fmt.Sprintf("%v=%s/%d", id, j.Status, j.Attempts))
	}
	return strings.Join(parts, " ")
}

// checkAttempts fails the test the moment any job has more attempts than
// it may.
func checkAttempts(t *testing.T, st *store.Store, ids []uuid.UUID) {
	t.Helper()
	for _, id := range ids {
		j, err := st.Get(context.Background(), store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Attempts > j.MaxAttempts {
			t.Fatalf("job %v has %d attempts, max %d", id, j.Attempts, j.MaxAttempts)
		}
	}
}

// TestLambdaUserConcurrency: under the emulator with JOBS_USER_CONCURRENCY=1,
// one batch names two of alice's jobs. One runs; the other is not claimed
// (no attempt) and its message is sent again with JOBS_LAMBDA_CAP_DELAY as
// DelaySeconds instead of being reported in batchItemFailures; it runs when
// the message comes back. Both complete at attempt 1 and were never
// PROCESSING at once.
func TestLambdaUserConcurrency(t *testing.T) {
	dbURL, st, q := lambdaEnv(t, store.Options{Outbox: true})
	fn := startEmulator(t, dbURL, q, "JOBS_USER_CONCURRENCY=1", "JOBS_LAMBDA_CAP_DELAY=1s")
	ctx := t.Context()

	first := createPreview(t, st, "[[simulate:slow=500ms]] The harvest was late.")
	second := createPreview(t, st, "[[simulate:slow=500ms]] Prices fell sharply in March.")
	all := []uuid.UUID{first, second}
	if _, err := fn.invokeRaw(ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	var failures int
	record := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		resp, err := fn.invokeSQS(ctx, ev)
		failures += len(resp.BatchItemFailures)
		return resp, err
	}
	client := q.Client()
	var batches []int
	deadline := time.Now().Add(60 * time.Second)
	for !allTerminal(t, st, all) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished: %v", jobStates(t, st, all))
		}
		n, err := sqsfake.Poll(ctx, client, q.URL, 10, 30, record)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			batches = append(batches, n)
		}
		if p := processing(t, st, all); p > 1 {
			t.Fatalf("%d of alice's jobs PROCESSING at once under a cap of 1", p)
		}
	}

	if len(batches) == 0 || batches[0] != 2 {
		t.Fatalf("batches %v, want the first to hold both messages", batches)
	}
	j1, j2 := getJob(t, st, first), getJob(t, st, second)
	for _, j := range []*job.Job{j1, j2} {
		if j.Status != job.StatusCompleted || j.Attempts != 1 {
			t.Errorf("job %v: %s after %d attempts, want COMPLETED after 1", j.ID, j.Status, j.Attempts)
		}
	}
	// Whichever ran second started after the other completed.
	a, b := j1, j2
	if b.StartedAt.Before(*a.StartedAt) {
		a, b = b, a
	}
	if b.StartedAt.Before(*a.CompletedAt) {
		t.Errorf("alice's jobs overlapped: one completed at %v, the other started at %v", a.CompletedAt, b.StartedAt)
	}
	var resent []sqsfake.Sent
	for _, s := range q.Sent() {
		if !s.Batch {
			resent = append(resent, s)
		}
	}
	if len(resent) != 1 || resent[0].DelaySeconds != 1 {
		t.Errorf("messages sent again: %+v, want one with DelaySeconds 1 (JOBS_LAMBDA_CAP_DELAY)", resent)
	}
	if failures != 0 {
		t.Errorf("%d batchItemFailures, want none: a job at the cap is sent again, not failed", failures)
	}
	if dead := q.DeadLetters(); len(dead) != 0 {
		t.Errorf("dead letters: %v", dead)
	}
}

// TestLambdaRegistry: after an invocation under the emulator, the worker
// registry (the admin API's workers listing) shows the instance: its id is
// the workerId its job records, its host the function name and log stream
// the runtime gives, and nothing is in flight once the batch is done. When
// the emulator shuts down, the runtime gets SIGTERM (the function
// registered an internal extension for it) and the instance leaves the
// registry.
func TestLambdaRegistry(t *testing.T) {
	dbURL, st, q := lambdaEnv(t, store.Options{Outbox: true})
	fn := startEmulator(t, dbURL, q)
	ctx := t.Context()

	id := createPreview(t, st, "The harvest was late. Prices fell sharply in March.")
	if _, err := fn.invokeRaw(ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	if n, err := sqsfake.Poll(ctx, q.Client(), q.URL, 10, 30, fn.invokeSQS); err != nil || n != 1 {
		t.Fatalf("poll: %d messages, %v", n, err)
	}
	aj, err := st.Get(ctx, store.Operator("test"), id)
	if err != nil {
		t.Fatal(err)
	}
	if aj.Status != job.StatusCompleted || aj.WorkerID == nil {
		t.Fatalf("job %s, worker %v", aj.Status, aj.WorkerID)
	}
	ws, err := st.Processes(ctx, store.KindWorker)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 {
		t.Fatalf("workers %+v, want the one instance", ws)
	}
	w := ws[0]
	if w.ID != *aj.WorkerID || !strings.HasPrefix(w.Host, "test_function") || w.InFlight != 0 || w.Concurrency < 1 || w.Version == "" {
		t.Errorf("registry entry %+v, want id %s (the job's workerId), host test_function..., nothing in flight", w, *aj.WorkerID)
	}

	if err := fn.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 20*time.Second, "the instance unregistered after the emulator's shutdown", func() error {
		ws, err := st.Processes(ctx, store.KindWorker)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) > 0 {
			return fmt.Errorf("still registered: %+v", ws)
		}
		return nil
	})
}

func getJob(t *testing.T, st *store.Store, id uuid.UUID) *job.Job {
	t.Helper()
	j, err := st.Get(context.Background(), store.OwnedBy("alice"), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// processing counts the jobs among ids that hold a lease now (PROCESSING
// and not waiting for a retry).
func processing(t *testing.T, st *store.Store, ids []uuid.UUID) int {
	t.Helper()
	var n int
	err := st.DB().Get(&n, `SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'PROCESSING' AND lease_owner IS NOT NULL`, pq.Array(uuidStrings(ids)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
