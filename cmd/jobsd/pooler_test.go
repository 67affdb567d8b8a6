package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// devTokenRE finds the admin token in the line jobsd dev prints when ready.
var devTokenRE = regexp.MustCompile(`Authorization: Bearer ([^']+)'`)

// TestDevBehindPgBouncer: `jobsd dev` on a database of the developer's
// behind PgBouncer in transaction mode migrates through the direct URL
// (goose's session lock), serves the API and runs its worker through the
// pooler, and its worker completes a job created through the API (its
// fallback poll is an hour: a notification on the direct URL, or the
// worker's first claim, starts it).
func TestDevBehindPgBouncer(t *testing.T) {
	proctest.SkipShort(t, "dev process")
	url := pgtest.NewDatabase(t)
	b := pgtest.PgBouncer(t, url)
	o := proctest.Options{Binary: binary, Env: []string{
		"DATABASE_URL=" + b.URL(url),
		"JOBS_DB_POOLER=transaction",
		"JOBS_DIRECT_DATABASE_URL=" + url,
		"JOBS_DEV_KEY=" + filepath.Join(t.TempDir(), "dev-issuer.pem"),
		"JOBS_WORKER_POLL=1h",
		"JOBS_LOG_LEVEL=warn",
	}}
	if testing.Verbose() {
		o.Echo = os.Stderr
	}
	dev := proctest.Dev(t, o)
	m, err := dev.WaitLine(devTokenRE, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+dev.Addr+"/api/jobs",
		strings.NewReader(`{"type":"RISK_ANALYSIS","input":{"text":"Maize prices are volatile."}}`))
	req.Header.Set("Authorization", "Bearer "+m[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create through jobsd dev: %d", resp.StatusCode)
	}
	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var id string
	if err := st.DB().GetContext(t.Context(), &id, `SELECT id FROM jobs`); err != nil {
		t.Fatal(err)
	}
	waitJob(t, st, uuid.MustParse(id), "completed by dev's worker, woken on the direct URL", func(j *job.Job) bool {
		return j.Status == job.StatusCompleted
	})
}
