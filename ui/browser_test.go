package ui_test

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// axe-core, vendored with its licence; the test injects it into each page.
// It is never served to users.
//
//go:embed testdata/axe/axe.min.js
var axeSource string

var (
	chromiumPath string
	jobsdBinary  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	chromiumPath = findChromium()
	if chromiumPath == "" || testing.Short() {
		// Without a browser, or under -short, the browser tests skip (or
		// fail, when required), and need neither a database nor the binary.
		os.Exit(m.Run())
	}
	var err error
	if jobsdBinary, err = proctest.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(pgtest.Main(m))
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needBrowser skips without Chromium, unless JOBS_TEST_REQUIRE_BROWSER=1
// (CI) makes that a failure, and under -short.
func needBrowser(t *testing.T) {
	t.Helper()
	proctest.SkipShort(t, "browser")
	if chromiumPath != "" {
		return
	}
	if os.Getenv("JOBS_TEST_REQUIRE_BROWSER") == "1" {
		t.Fatal("JOBS_TEST_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install -y chromium")
	}
	t.Skip("no chromium on PATH, so the console's browser tests do not run (apt-get install -y chromium)")
}

// stack is a running `jobsd dev`: API, worker, dev issuer and console.
type stack struct {
	base    string // the API's and the console's origin
	console string // base + /ui/
	token   string // an admin token for "alice", printed by jobsd dev
}

// tokenRE finds the admin token in the line `jobsd dev` prints once it
// listens.
var tokenRE = regexp.MustCompile(`jobsd dev ready on \S+ .*Bearer ([A-Za-z0-9._-]+)'`)

// startStack runs `jobsd dev` on free ports against a fresh database; with
// crossOrigin its issuer gets a listener (an origin) of its own. The worker
// runs one job at a time, so that a job queued behind a slow one stays
// PENDING long enough to be seen.
func startStack(t *testing.T, crossOrigin bool) *stack {
	t.Helper()
	env := []string{
		"DATABASE_URL=" + pgtest.NewDatabase(t),
		"JOBS_DEV_KEY=" + filepath.Join(t.TempDir(), "dev-issuer.pem"),
		"JOBS_LOG_LEVEL=warn",
		"JOBS_WORKER_CONCURRENCY=1",
		"JOBS_WORKER_POLL=200ms",
		"JOBS_WORKER_BACKOFF_BASE=50ms",
		"JOBS_WORKER_BACKOFF_MAX=100ms",
	}
	if crossOrigin {
		env = append(env, "JOBS_DEV_ISSUER_ADDR=127.0.0.1:0")
	}
	o := proctest.Options{Binary: jobsdBinary, Env: env, ReadyWithin: 90 * time.Second}
	if testing.Verbose() {
		o.Echo = os.Stderr
	}
	dev := proctest.Dev(t, o)
	// Printed before the API serves, so it is there once /readyz answers.
	m, err := dev.WaitLine(tokenRE, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + dev.Addr
	return &stack{base: base, console: base + "/ui/", token: m[1]}
}

// post sends an API request with the stack's admin token and decodes the
// answer's job id.
func (s *stack) createJob(t *testing.T, path string, body any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	var j struct{ ID string }
	if err := json.Unmarshal(raw, &j); err != nil || j.ID == "" {
		t.Fatalf("POST %s: no job id in %s", path, raw)
	}
	return j.ID
}

// call sends an API request with the stack's admin token, requires the
// status want and returns the answer's id.
func (s *stack) call(t *testing.T, method, path string, body any, want int) string {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	var v struct{ ID string }
	if err := json.Unmarshal(raw, &v); err != nil || v.ID == "" {
		t.Fatalf("%s %s: no id in %s", method, path, raw)
	}
	return v.ID
}

func (s *stack) preview(t *testing.T, prompt string) string {
	t.Helper()
	return s.createJob(t, "/api/admin/prompts/preview", map[string]any{"prompt": prompt})
}

// browser is one headless Chromium tab with a watch on what the page does
// wrong: console errors, uncaught exceptions, failed requests.
type browser struct {
	t       *testing.T
	ctx     context.Context
	origin  string
	shots   string
	mu      sync.Mutex
	errs    []string
	allow   map[int64]bool // HTTP statuses from the own origin that are expected now
	urls    map[network.RequestID]string
	checked int
}

// artifactsDir is where screenshots go: JOBS_TEST_ARTIFACTS, or a new
// temporary folder that outlives the test.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("JOBS_TEST_ARTIFACTS")
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "jobsd-console-screenshots")
	} else {
		dir, err = filepath.Abs(dir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts Chromium: headless, without a sandbox (CI runs as
// root), with a fresh profile and nothing that talks to the network by
// itself.
func newBrowser(t *testing.T, origin, shots string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, origin: origin, shots: shots, allow: map[int64]bool{}, urls: map[network.RequestID]string{}}
	if err := chromedp.Listen(ctx, b.watch); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, struct{}{}); err != nil {
		t.Fatal(err)
	}
	return b
}

// watch runs on chromedp's reading goroutine: it only records.
func (b *browser) watch(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		b.errs = append(b.errs, "uncaught: "+msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errs = append(b.errs, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level != log.EntryLevelError {
			return
		}
		// The network's own "Failed to load resource" line repeats a
		// response checked below, where expected statuses are allowed.
		if e.Source == log.EntrySourceNetwork && e.NetworkRequestID != "" {
			return
		}
		b.errs = append(b.errs, fmt.Sprintf("log %s: %s %s", e.Source, e.Text, e.URL))
	case *network.EventRequestWillBeSent:
		b.urls[ev.RequestID] = ev.Request.URL
	case *network.EventResponseReceived:
		if ev.Response.Status >= 400 && sameOrigin(ev.Response.URL, b.origin) && !b.allow[ev.Response.Status] {
			b.errs = append(b.errs, fmt.Sprintf("HTTP %d from %s", ev.Response.Status, ev.Response.URL))
		}
	case *network.EventLoadingFailed:
		// A fetch the page aborts itself (leaving a job's page ends its
		// event stream) is not a failure.
		if ev.Canceled || ev.ErrorText == "net::ERR_ABORTED" {
			return
		}
		b.errs = append(b.errs, fmt.Sprintf("request failed: %s %s (blocked: %s)", b.urls[ev.RequestID], ev.ErrorText, ev.BlockedReason))
	}
}

func sameOrigin(u, origin string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Scheme+"://"+p.Host == origin
}

// check fails the test for anything the page did wrong since the last check.
func (b *browser) check(step string) {
	b.t.Helper()
	b.mu.Lock()
	errs := b.errs[b.checked:]
	b.checked = len(b.errs)
	b.mu.Unlock()
	for _, e := range errs {
		b.t.Errorf("%s: %s", step, e)
	}
}

// pageErrors lists what the page did wrong, for a failure message.
func (b *browser) pageErrors() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) == 0 {
		return ""
	}
	return "\npage errors:\n  " + strings.Join(b.errs, "\n  ")
}

func (b *browser) allowStatus(status int64, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.allow[status] = on
}

func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(step, " ", "-"))
		b.t.Fatalf("%s: %v%s", step, err, b.pageErrors())
	}
}

// waitFor evaluates a JavaScript condition until it is true.
// An evaluation that meets a navigation (the document it ran in went away)
// is tried again in the next document.
func (b *browser) waitFor(step, expr string) {
	b.t.Helper()
	err := eventually.Wait(45*time.Second, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		if err == nil && !ok {
			err = errors.New("false")
		}
		return err
	})
	if err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(step, " ", "-"))
		b.t.Fatalf("%s: not true after 45 s (last: %v): %s%s", step, err, expr, b.pageErrors())
	}
}

func (b *browser) eval(step, expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
	return v
}

// screenshot saves the viewport, or with full the whole page, as name.png.
func (b *browser) screenshot(name string, full ...bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if len(full) > 0 && full[0] {
		shot = chromedp.FullScreenshot(100) // 100: PNG
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// tabTo presses Tab until cond holds (at most 20 times).
func (b *browser) tabTo(what, cond string) {
	b.t.Helper()
	for range 20 {
		if b.eval(what, "String(Boolean("+cond+"))") == "true" {
			return
		}
		b.do("Tab", chromedp.KeyEvent("\t"))
	}
	b.t.Fatalf("Tab never reached %s", what)
}

// scheme emulates the system's light or dark setting.
func (b *browser) scheme(value string) {
	b.t.Helper()
	_, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: value}}})
	if err != nil {
		b.t.Fatalf("prefers-color-scheme %s: %v", value, err)
	}
}

// axeBothSchemes runs axe in the light and the dark theme (colour contrast
// differs), screenshots the dark one, and goes back to light.
func (b *browser) axeBothSchemes(page string) {
	b.t.Helper()
	b.axe(page)
	b.scheme("dark")
	b.axe(page + " (dark)")
	b.screenshot(page + "-dark")
	b.scheme("light")
}

// axe runs axe-core in the page and fails the test for each violation.
func (b *browser) axe(page string) {
	b.t.Helper()
	if b.eval("inject axe", `typeof window.axe === 'object' ? 'yes' : 'no'`) == "no" {
		ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](axeSource)); err != nil {
			b.t.Fatalf("inject axe on %s: %v", page, err)
		}
	}
	out := b.eval("axe "+page, `axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations.map(v =>
		({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))`)
	var violations []struct {
		ID, Impact, Help string
		Nodes            []string
	}
	if err := json.Unmarshal([]byte(out), &violations); err != nil {
		b.t.Fatalf("axe %s: %v: %s", page, err, out)
	}
	for _, v := range violations {
		b.t.Errorf("axe on %s: %s (%s): %s at %v", page, v.ID, v.Impact, v.Help, v.Nodes)
	}
}

// signIn goes through the whole authorization code flow from the console's
// sign-in page: the issuer's form, the redirect back, the code exchange.
func (b *browser) signIn(console, user string, admin bool) {
	b.t.Helper()
	b.do("open the console", chromedp.Navigate(console))
	b.waitFor("sign-in page", `document.querySelector('main h1')?.textContent === 'Sign in'`)
	b.do("start sign-in", chromedp.Click(chromedp.CSS("main button.primary")))
	b.do("issuer form", chromedp.WaitVisible(chromedp.ID("username")))
	b.do("type the user", chromedp.SendKeys(chromedp.ID("username"), user))
	if !admin {
		b.do("untick admin", chromedp.Click(chromedp.CSS(`input[name="admin"]`)))
	}
	b.do("submit", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.waitFor("back in the console", `location.pathname.startsWith('/ui/') && location.pathname !== '/ui/callback' && document.querySelector('#who strong') !== null`)
	// The code and state left the address bar, and the token is nowhere in it.
	if href := b.eval("location", `location.href`); strings.Contains(href, "code=") || strings.Contains(href, "state=") || strings.Contains(href, "token") {
		b.t.Errorf("after sign-in the address is %s", href)
	}
}

// TestConsole signs in through the issuer on another origin (as Cognito's
// is), follows a job live from PENDING to COMPLETED, requeues a FAILED job,
// cancels a running one, pages and filters the job list, opens a 4 MiB
// result, and runs axe on every page.
func TestConsole(t *testing.T) {
	needBrowser(t)
	st := startStack(t, true)
	shots := artifactsDir(t)
	t.Logf("screenshots in %s", shots)
	b := newBrowser(t, st.base, shots)

	b.signIn(st.console, "ops-alice", true)
	b.waitFor("overview", `document.querySelector('main h1')?.textContent === 'Overview' && document.querySelector('.live.on') !== null`)
	b.check("sign in")

	// Some history for the overview and the list.
	for i := range 3 {
		st.preview(t, fmt.Sprintf("Summarise the harvest report number %d. Yields rose in the north; rainfall fell.", i))
	}
	failed := st.preview(t, "[[simulate:permanent]] This one fails at once.")
	b.waitFor("overview shows the finished jobs", `[...document.querySelectorAll('.card')].some(c => c.textContent.startsWith('Completed, last hour') && c.querySelector('dd').textContent !== '0')
		&& [...document.querySelectorAll('.card')].some(c => c.textContent.startsWith('Failed, last hour') && c.querySelector('dd').textContent !== '0')`)
	b.waitFor("a worker is listed", `document.querySelector('section[aria-labelledby="h-workers"] table') !== null`)
	b.axeBothSchemes("overview")
	b.screenshot("overview")
	b.check("overview")

	// A job queued behind a slow one: its page goes PENDING → PROCESSING →
	// COMPLETED, live, without a reload.
	st.preview(t, "[[simulate:slow=5s]] The blocker holds the only worker slot.")
	slow := st.preview(t, "[[simulate:slow=3s]] Summarise: the cooperative bought two new tractors and hired four people.")
	b.do("open the slow job", chromedp.Navigate(st.console+"jobs/"+slow))
	b.eval("mark the page", `String(window.__sameDocument = 1)`)
	b.waitFor("PENDING", `document.querySelector('.badge.big')?.textContent === 'PENDING'`)
	b.waitFor("live", `document.querySelector('.live.on') !== null`)
	b.waitFor("PROCESSING", `document.querySelector('.badge.big')?.textContent === 'PROCESSING'`)
	b.waitFor("COMPLETED", `document.querySelector('.badge.big')?.textContent === 'COMPLETED' && document.querySelector('pre.json') !== null
		&& document.querySelector('ol.timeline li.completed') !== null`)
	if b.eval("same document", `String(window.__sameDocument)`) != "1" {
		t.Error("the job page reloaded on its way to COMPLETED")
	}
	b.waitFor("stream stopped", `document.querySelector('.live')?.textContent === 'Finished'`)
	// The stream reader, made to reconnect after the finished job's stream
	// ended, sends Last-Event-ID and stops at the 204 it gets: one event,
	// no repeat.
	got := b.eval("reconnect", fmt.Sprintf(`import('/ui/assets/js/sse.js').then(m => new Promise(resolve => {
		let events = 0;
		m.follow('/api/admin/jobs/%s/events', {onEvent: () => events++, done: () => false,
			onStop: reason => resolve(reason + ' after ' + events + ' event(s)'), onError: e => resolve('error: ' + e.message)});
	}))`, slow))
	if got != "finished after 1 event(s)" {
		t.Errorf("event stream reader on a finished job: %s", got)
	}
	b.axeBothSchemes("job")
	b.screenshot("job", true)
	b.check("live job")

	// Deep link survives a reload: the token is in this tab's session.
	b.do("reload", chromedp.Reload())
	b.waitFor("job after reload", `document.querySelector('.badge.big')?.textContent === 'COMPLETED'`)
	b.check("reload")

	// Requeue a FAILED job: a confirmation, then the new job's page.
	b.do("open the failed job", chromedp.Navigate(st.console+"jobs/"+failed))
	b.waitFor("FAILED", `document.querySelector('.badge.big')?.textContent === 'FAILED'`)
	b.do("requeue", chromedp.Click(chromedp.CSS(`.actions button.primary`)))
	b.do("confirm dialog", chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)))
	b.axe("requeue confirmation")
	b.do("confirm requeue", chromedp.Click(chromedp.CSS(`dialog[open] button[data-confirm]`)))
	b.waitFor("the new job's page", fmt.Sprintf(`location.pathname !== '/ui/jobs/%s' && [...document.querySelectorAll('dl.details dd a')].some(a => a.textContent === '%s')`, failed, failed))
	b.check("requeue")

	// Cancel a running job.
	running := st.preview(t, "[[simulate:slow=50s]] Runs until cancelled.")
	b.do("open the running job", chromedp.Navigate(st.console+"jobs/"+running))
	b.waitFor("PROCESSING", `document.querySelector('.badge.big')?.textContent === 'PROCESSING'`)
	// Clicked in one evaluation: the page re-renders the job on each event
	// of its stream, which can replace the button between a lookup by
	// chromedp.Click and its click ("Could not find node with given id").
	b.waitFor("cancel", `(() => { const c = document.querySelector('.actions button.danger'); c?.click(); return !!c; })()`)
	b.do("cancel dialog", chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)))
	b.do("confirm cancel", chromedp.Click(chromedp.CSS(`dialog[open] button[data-confirm]`)))
	b.waitFor("cancelled", `document.querySelector('.badge.big')?.textContent === 'FAILED' && document.querySelector('.alert')?.textContent.includes('Cancelled')`)
	b.check("cancel")

	// The list: newest first, a status filter in the address, and paging.
	b.do("jobs page", chromedp.Click(chromedp.CSS(`#nav a[data-nav="jobs"]`)))
	b.waitFor("job rows", `document.querySelectorAll('main tbody tr').length >= 5`)
	b.axeBothSchemes("jobs")
	b.screenshot("jobs")
	b.do("filter FAILED", chromedp.SetValue(chromedp.ID("status"), "FAILED"), chromedp.Click(chromedp.CSS(`form.filters button.primary`)))
	b.waitFor("only FAILED", `location.search.includes('status=FAILED') && document.querySelector('main tbody tr') !== null
		&& [...document.querySelectorAll('main tbody .badge')].every(e => e.textContent === 'FAILED')`)
	b.do("two a page", chromedp.Navigate(st.console+"jobs?limit=2"))
	b.waitFor("first page", `document.querySelectorAll('main tbody tr').length === 2 && document.querySelector('a[rel="next"]') !== null`)
	first := b.eval("first page ids", `[...document.querySelectorAll('main tbody th a')].map(a => a.textContent).join(',')`)
	b.do("next page", chromedp.Click(chromedp.CSS(`a[rel="next"]`)))
	b.waitFor("second page", fmt.Sprintf(`location.search.includes('cursor=') && document.querySelectorAll('main tbody tr').length === 2
		&& [...document.querySelectorAll('main tbody th a')].map(a => a.textContent).join(',') !== %q
		&& [...document.querySelectorAll('main tbody th a')].every(a => a.textContent < %q.split(',')[1])`, first, first))
	b.check("jobs")

	// A result of about 4 MiB opens in part at once, and whole on request.
	big := st.createJob(t, "/api/jobs", map[string]any{"type": "PARSE_DOCUMENT", "input": map[string]any{
		"contentType": "text/markdown", "document": bigMarkdown(3_500_000)}})
	b.do("open the big job", chromedp.Navigate(st.console+"jobs/"+big))
	b.waitFor("big result", `document.querySelector('pre.json') !== null`)
	if n, _ := strconv.Atoi(b.eval("shown at first", `String(document.querySelector('pre.json').textContent.length)`)); n == 0 || n > 100_000 {
		t.Errorf("the page shows %d characters of the big result at once, want a first part", n)
	}
	b.do("show all", chromedp.Click(chromedp.Search(`//button[normalize-space()="Show all"]`)))
	b.waitFor("whole result", `document.querySelector('pre.json').textContent.length > 3000000 && document.querySelector('pre.json + .actions') === null`)
	b.check("big result")

	// Webhooks: the admin's list of endpoints with their health, one
	// endpoint's deliveries, and a replay after a confirmation.
	hook := st.call(t, http.MethodPost, "/api/webhooks", map[string]any{"url": "https://hooks.example.com/console"}, http.StatusCreated)
	delivery := st.call(t, http.MethodPost, "/api/webhooks/"+hook+"/test", nil, http.StatusAccepted)
	b.do("webhooks page", chromedp.Click(chromedp.CSS(`#nav a[data-nav="webhooks"]`)))
	b.waitFor("the endpoint listed", fmt.Sprintf(`[...document.querySelectorAll('main tbody th a')].some(a => a.textContent === %q)`, hook))
	b.axeBothSchemes("webhooks")
	b.do("open the endpoint", chromedp.Click(chromedp.CSS(fmt.Sprintf(`main tbody th a[href="/ui/webhooks/%s"]`, hook))))
	b.waitFor("its delivery", fmt.Sprintf(`[...document.querySelectorAll('main tbody th')].some(th => th.textContent === %q)`, delivery))
	b.axeBothSchemes("webhook deliveries")
	b.screenshot("webhook deliveries")
	b.do("replay", chromedp.Click(chromedp.CSS(`main tbody button`)))
	b.do("replay dialog", chromedp.WaitVisible(chromedp.CSS(`dialog[open]`)))
	b.axe("replay confirmation")
	b.do("confirm replay", chromedp.Click(chromedp.CSS(`dialog[open] button[data-confirm]`)))
	b.waitFor("replayed", `document.querySelector('main .notice')?.textContent === 'The delivery was queued again.'`)
	b.check("webhooks")

	b.do("sign out", chromedp.Click(chromedp.CSS(`#who button`)))
	b.waitFor("signed out", `document.querySelector('main h1')?.textContent === 'Sign in' && sessionStorage.length === 0`)
	b.axe("sign-in")
	b.check("sign out")
}

// TestConsoleSameOrigin runs `jobsd dev` as `make run` does (the issuer
// under /dev-issuer of the API): an admin signs in and sees the overview; a
// user outside the admin group is refused with a clear page.
func TestConsoleSameOrigin(t *testing.T) {
	needBrowser(t)
	st := startStack(t, false)
	shots := artifactsDir(t)
	b := newBrowser(t, st.base, shots)

	b.signIn(st.console, "alice", true)
	b.waitFor("overview", `document.querySelector('main h1')?.textContent === 'Overview' && document.querySelector('.live.on') !== null`)
	b.check("admin sign-in")

	// The session ends when the token does: on its expiry time, and when
	// the API refuses the token (401).
	b.eval("a session about to end", `(() => { const k = 'jobsd.console.token'; const s = JSON.parse(sessionStorage.getItem(k));
		s.expiresAt = Date.now() + 1500; sessionStorage.setItem(k, JSON.stringify(s)); return 'ok'; })()`)
	b.do("reload", chromedp.Reload())
	b.waitFor("overview again", `document.querySelector('main h1')?.textContent === 'Overview'`)
	b.waitFor("expired", `document.querySelector('main h1')?.textContent === 'Sign in' && document.querySelector('main .notice')?.textContent.includes('expired')`)
	b.check("expiry")

	// Signing in again from the keyboard alone.
	b.tabTo("the sign-in button", `document.activeElement?.textContent === 'Sign in'`)
	b.do("press Enter", chromedp.KeyEvent("\r"))
	b.do("issuer form", chromedp.WaitVisible(chromedp.ID("username")))
	b.do("type and submit", chromedp.SendKeys(chromedp.ID("username"), "alice\r"))
	b.waitFor("overview after keyboard sign-in", `document.querySelector('main h1')?.textContent === 'Overview' && document.querySelector('.live.on') !== null`)
	b.check("keyboard sign-in")

	b.allowStatus(http.StatusUnauthorized, true)
	b.eval("a token the API refuses", `(() => { const k = 'jobsd.console.token'; const s = JSON.parse(sessionStorage.getItem(k));
		s.accessToken = s.accessToken.slice(0, -8) + 'AAAAAAAA'; sessionStorage.setItem(k, JSON.stringify(s)); return 'ok'; })()`)
	b.do("reload", chromedp.Reload())
	b.waitFor("back to sign-in", `document.querySelector('main h1')?.textContent === 'Sign in' && sessionStorage.getItem('jobsd.console.token') === null`)
	b.check("refused token")
	b.allowStatus(http.StatusUnauthorized, false)

	b.allowStatus(http.StatusForbidden, true) // the refusal is the point
	b.signIn(st.console, "bob", false)
	b.waitFor("refused", `document.querySelector('main h1')?.textContent === 'Admin access required'`)
	b.axe("admin access required")
	b.screenshot("forbidden")
	b.check("non-admin")
}

// bigMarkdown is a base64 Markdown document of about n bytes, in sections,
// whose parse result is close to the 4 MiB a result may have.
func bigMarkdown(n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "# Section %d\n\n", i)
		for range 20 {
			sb.WriteString("The field trials compared three varieties over two seasons and recorded yield per hectare.\n")
		}
		sb.WriteString("\n")
	}
	return base64.StdEncoding.EncodeToString([]byte(sb.String()))
}
