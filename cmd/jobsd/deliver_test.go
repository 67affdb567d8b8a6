package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/webhook"
)

// deliverSetup is a database with one endpoint of alice's, its secret
// sealed with the key jobsd deliver is given.
type deliverSetup struct {
	st       *store.Store
	url      string
	secret   string // whsec_…
	keyEnv   string // JOBS_WEBHOOK_KEY=…
	endpoint uuid.UUID
}

func newDeliverSetup(t *testing.T, hookURL string) deliverSetup {
	t.Helper()
	st, url := pgtest.NewStore(t)
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	sealer, err := webhook.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := webhook.ParseSecret(secret)
	sealed, err := sealer.Seal(raw)
	if err != nil {
		t.Fatal(err)
	}
	e, err := st.CreateWebhook(t.Context(), store.NewWebhook{UserID: "alice", URL: hookURL,
		EventTypes: []string{store.EventJobCompleted, store.EventJobFailed}, Secret: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return deliverSetup{st: st, url: url, secret: secret, keyEnv: "JOBS_WEBHOOK_KEY=" + key, endpoint: e.ID}
}

// startDeliver runs `jobsd deliver` on s's database with extra settings.
func (s deliverSetup) startDeliver(t *testing.T, extraEnv ...string) *proctest.Process {
	t.Helper()
	proctest.SkipShort(t, "deliver process")
	env := append([]string{"DATABASE_URL=" + s.url, s.keyEnv, "JOBS_WEBHOOK_ALLOW_PRIVATE=true", "JOBS_LOG_LEVEL=info"}, extraEnv...)
	o := proctest.Options{Binary: binary, Env: env}
	if testing.Verbose() {
		o.Echo = os.Stderr
	}
	return proctest.Deliver(t, o)
}

// completeJob creates a job of alice's and completes it through the
// worker's statements (claim, then the outcome), which write its outbox row.
func (s deliverSetup) completeJob(t *testing.T) uuid.UUID {
	t.Helper()
	ctx := t.Context()
	id := createPreview(t, s.st, "done")
	claimed, _, err := s.st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	if _, err := s.st.Finish(ctx, []store.Outcome{{ID: id, Lease: claimed[0].Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"ok"}`)}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDeliverProcess: `jobsd deliver` sends the event of a job that ended
// after it started, signed (verified by the Standard Webhooks reference
// library), and on SIGTERM waits for the attempt in flight, records it
// DELIVERED, and exits 0.
func TestDeliverProcess(t *testing.T) {
	arrived, release := make(chan []byte, 1), make(chan struct{})
	var secret string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		wh, err := standardwebhooks.NewWebhook(secret)
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			t.Errorf("the reference library refused the delivery: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		arrived <- body
		<-release // held until the process is told to stop
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	defer close(release)
	s := newDeliverSetup(t, rcv.URL+"/hook")
	secret = s.secret
	p := s.startDeliver(t)

	id := s.completeJob(t)
	var body []byte
	select {
	case body = <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatalf("no delivery in 30 s; last output:\n%s", p.Tail(20))
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			ID uuid.UUID `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type != store.EventJobCompleted || ev.Data.ID != id {
		t.Errorf("event %s (%v), want job.completed of %s", body, err, id)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitLine(regexp.MustCompile(`shutting down`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatalf("exited with an attempt in flight: %v", p.Err())
	}
	release <- struct{}{}
	if err := p.Wait(); err != nil {
		t.Errorf("jobsd deliver ended with %v, want exit 0", err)
	}
	var status string
	if err := s.st.DB().Get(&status, `SELECT status FROM webhook_deliveries WHERE endpoint_id = $1 AND job_id = $2`, s.endpoint, id); err != nil || status != store.DeliveryDelivered {
		t.Errorf("the attempt in flight at SIGTERM recorded %q (%v), want %s", status, err, store.DeliveryDelivered)
	}
}

// TestDeliverNice: every thread of `jobsd deliver` runs JOBS_WEBHOOK_NICE
// lower than the priority it started with (this test's), at most 19.
func TestDeliverNice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the nice value of every thread is set on Linux only")
	}
	own := threadNice(t, fmt.Sprintf("/proc/self/task/%d/stat", os.Getpid()))
	if own >= maxNice-1 {
		t.Skipf("this test runs at nice %d: too low a priority for a lower one to show (run it under nice -n 10 or less)", own)
	}
	const lower = 5
	want := min(own+lower, maxNice)
	s := newDeliverSetup(t, "http://127.0.0.1:1/hook")
	p := s.startDeliver(t, "JOBS_WEBHOOK_NICE="+strconv.Itoa(lower))
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", p.Cmd.Process.Pid))
	if err != nil || len(stats) < 2 {
		t.Fatalf("threads of jobsd deliver: %v, %v", stats, err)
	}
	for _, path := range stats {
		if got := threadNice(t, path); got != want {
			t.Errorf("%s: nice %d, want %d (this test's %d + %d)", path, got, want, own, lower)
		}
	}
}

// threadNice reads the nice value of a thread from its stat file: the
// 19th field, the 17th after the command name's closing parenthesis.
func threadNice(t *testing.T, statPath string) int {
	t.Helper()
	b, err := os.ReadFile(statPath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	fields := strings.Fields(string(rest))
	if !ok || len(fields) < 17 {
		t.Fatalf("%s: %q", statPath, b)
	}
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatalf("%s: nice %q", statPath, fields[16])
	}
	return n
}

// TestDeliverSettings: a JOBS_WEBHOOK_NICE out of range, or a yield
// setting out of range, stops jobsd deliver at start with a message that
// names it.
func TestDeliverSettings(t *testing.T) {
	for _, tc := range []struct{ name, env, want string }{
		{name: "nice above 19", env: "JOBS_WEBHOOK_NICE=20", want: "JOBS_WEBHOOK_NICE=20"},
		{name: "negative yield backlog", env: "JOBS_WEBHOOK_YIELD_BACKLOG=-1", want: `JOBS_WEBHOOK_YIELD_BACKLOG="-1"`},
		{name: "no yield bound", env: "JOBS_WEBHOOK_YIELD_MAX=0s", want: "JOBS_WEBHOOK_YIELD_MAX=0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, "deliver")
			cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://127.0.0.1:1/none", tc.env)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s: %v\n%s", tc.env, err, out)
			}
		})
	}
}
