package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/dispatch"
	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/internal/sqsfake"
	"github.com/jobsd/jobsd/store"
)

// devIssuer is a token issuer whose keys a `jobsd serve` under test
// fetches (JOBS_AUTH_ISSUER), minting tokens for the dev client id as
// `jobsd token` does.
type devIssuer struct {
	iss *auth.Issuer
	url string
}

func newDevIssuer(t *testing.T) *devIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	d := &devIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+auth.JWKSPath, func(w http.ResponseWriter, r *http.Request) { d.iss.JWKSHandler().ServeHTTP(w, r) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	d.url = srv.URL
	d.iss = auth.NewIssuer(key, d.url)
	return d
}

// client returns the typed client of the API at base, as user sub.
func (d *devIssuer) client(t *testing.T, base, sub string, admin bool) *client.Client {
	t.Helper()
	var groups []string
	if admin {
		groups = []string{auth.DefaultAdminGroup}
	}
	tok, err := d.iss.Mint(sub, devClientID, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(base, client.WithToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// awsTestEnv points the SDK at the fake queue with static credentials.
func awsTestEnv(q *sqsfake.Queue) []string {
	return []string{
		"JOBS_SQS_QUEUE_URL=" + q.URL,
		"JOBS_SQS_ENDPOINT=" + q.Endpoint(),
		"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// TestLambdaAPI runs the whole SQS path end to end with real processes: a
// `jobsd serve` with JOBS_DISPATCH=sqs in front of the wire-level SQS fake,
// `jobsd lambda` under the Runtime Interface Emulator, and between them the
// test's event source mapping. Two users create jobs over HTTP with the
// typed client and follow them with GET /api/jobs/{id}, one of them by long
// polls (waitSeconds), until COMPLETED. Each job's message was sent exactly
// once, by the API, from the outbox row written in the creating
// transaction (SendMessageBatch at once, no sweep needed); each job ran
// once (attempts 1); and neither the API's sweep (every 100 ms here) nor
// the scheduled maintenance round sends any of them again.
func TestLambdaAPI(t *testing.T) {
	dbURL, st, q := lambdaEnv(t, store.Options{})
	iss := newDevIssuer(t)
	env := append([]string{
		"DATABASE_URL=" + dbURL,
		"JOBS_AUTH_ISSUER=" + iss.url,
		"JOBS_AUTH_CLIENT_IDS=" + devClientID,
		"JOBS_DISPATCH=sqs",
		"JOBS_OUTBOX_SWEEP=100ms",
		"JOBS_RATE_READ=0", "JOBS_RATE_CREATE=0",
		"JOBS_LOG_LEVEL=warn",
	}, awsTestEnv(q)...)
	o := proctest.Options{Binary: binary, Env: env}
	if testing.Verbose() {
		o.Echo = os.Stderr
	}
	api := proctest.Serve(t, o)
	fn := startEmulator(t, dbURL, q)
	ctx := t.Context()
	base := "http://" + api.Addr

	alice := iss.client(t, base, "alice", true) // AI_PREVIEW is for admins
	bob := iss.client(t, base, "bob", false)
	type created struct {
		c  *client.Client
		id string
	}
	var jobs []created
	for _, prompt := range []string{"The harvest was late.", "Prices fell sharply in March.", "Rain came in April."} {
		j, err := alice.CreatePreview(ctx, gen.PromptPreviewRequest{Prompt: prompt}, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, created{alice, j.Id.String()})
		j, err = bob.CreateJob(ctx, "RISK_ANALYSIS", map[string]any{"text": prompt}, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, created{bob, j.Id.String()})
	}

	// Each client follows its job from now on: the first by long polls,
	// the others by plain polls.
	type outcome struct {
		id  string
		job *gen.Job
		err error
	}
	done := make(chan outcome, len(jobs))
	for i, c := range jobs {
		go func() {
			if i == 0 {
				j, err := c.c.Wait(ctx, c.id, client.WithLongPoll(10*time.Second))
				done <- outcome{c.id, j, err}
				return
			}
			j, err := pollUntilFinished(ctx, c.c, c.id)
			done <- outcome{c.id, j, err}
		}()
	}

	sqsClient := q.Client()
	finished := map[string]*gen.Job{}
	deadline := time.Now().Add(90 * time.Second)
	for len(finished) < len(jobs) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs finished; sent %+v", len(finished), len(jobs), q.Sent())
		}
		if _, err := sqsfake.Poll(ctx, sqsClient, q.URL, 10, 30, fn.invokeSQS); err != nil {
			t.Fatal(err)
		}
		for drained := false; !drained; {
			select {
			case o := <-done:
				if o.err != nil {
					t.Fatalf("following job %s: %v", o.id, o.err)
				}
				finished[o.id] = o.job
			default:
				drained = true
			}
		}
	}

	for id, j := range finished {
		if j.Status != gen.COMPLETED || j.Attempts != 1 || j.Result == nil {
			t.Errorf("job %s: %s after %d attempts (error %v), want COMPLETED after 1", id, j.Status, j.Attempts, j.Error)
		}
	}
	ids := make([]string, len(jobs))
	for i, c := range jobs {
		ids[i] = c.id
	}
	checkSentOnce(t, q, ids)
	var left int
	if err := st.DB().Get(&left, `SELECT count(*) FROM outbox`); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d outbox rows left after the API sent them", left)
	}
	// The scheduled round sweeps the outbox too: nothing to send.
	body, err := fn.invokeRaw(ctx, scheduled)
	if err != nil {
		t.Fatal(err)
	}
	var round dispatch.MaintainReport
	if err := json.Unmarshal(body, &round); err != nil {
		t.Fatal(err)
	}
	if round.Sent != 0 || round.Retried != 0 {
		t.Errorf("maintenance round %+v, want nothing sent or retried", round)
	}
	if got := len(q.Sent()); got != len(jobs) {
		t.Errorf("%d messages sent in all, want %d: one per job", got, len(jobs))
	}
	if n, dead := q.Len(), q.DeadLetters(); n != 0 || len(dead) != 0 {
		t.Errorf("queue holds %d messages, dead letters %v", n, dead)
	}
}

// pollUntilFinished polls GET /api/jobs/{id} until the job is COMPLETED or
// FAILED.
func pollUntilFinished(ctx context.Context, c *client.Client, id string) (*gen.Job, error) {
	for {
		j, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.Status == gen.COMPLETED || j.Status == gen.FAILED {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkSentOnce: every job's message was sent exactly once, in a
// SendMessageBatch with no delay (the API's outbox sender), and nothing
// else was sent.
func checkSentOnce(t *testing.T, q *sqsfake.Queue, ids []string) {
	t.Helper()
	count := map[string]int{}
	for _, s := range q.Sent() {
		if !s.Batch || s.DelaySeconds != 0 {
			t.Errorf("message %+v was not the API's outbox send", s)
		}
		count[s.Body]++
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("job %s: sent %d times, want once", id, count[id])
		}
	}
	if len(count) != len(ids) {
		t.Errorf("messages for %d bodies, want %d jobs: %v", len(count), len(ids), count)
	}
}
