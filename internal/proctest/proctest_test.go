package proctest

import (
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the tests that need a database skip
	}
	os.Exit(pgtest.Main(m))
}

// TestBinary: the binary runs, and a second look-up (here and in any other
// test binary, through the cache) names the same file.
func TestBinary(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "jobsd") {
		t.Fatalf("%s version: %q, %v", bin, out, err)
	}
	if os.Getenv(binEnv) != "" {
		return
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourceKey(root)
	if err != nil {
		t.Fatal(err)
	}
	again, err := cachedBuild(root, key)
	if err != nil || again != bin {
		t.Errorf("second look-up: %q, %v; want %q", again, err, bin)
	}
}

func TestModulePath(t *testing.T) {
	for _, tt := range []struct{ name, gomod, want string }{
		{"plain", "module github.com/jobsd/jobsd\n\ngo 1.26\n", Module},
		{"quoted, after a comment", "// the service\nmodule \"github.com/jobsd/jobsd/bench\"\n", Module + "/bench"},
		{"none", "go 1.26\n", ""},
	} {
		if got := modulePath([]byte(tt.gomod)); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func shell(t *testing.T, script string, ready ...string) *Process {
	t.Helper()
	p, err := Launch(Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// TestStopEscalates: a process that ignores SIGTERM is SIGKILLed after the
// deadline; its output up to then is kept.
func TestStopEscalates(t *testing.T) {
	p := shell(t, `trap '' TERM; echo started; echo "to stderr" >&2; while :; do sleep 1; done`)
	if _, err := p.WaitLine(regexp.MustCompile(`^to stderr$`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(300 * time.Millisecond)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Stop: %v, want killed by SIGKILL", err)
	}
	if got := p.Tail(2); got != "started\nto stderr" {
		t.Errorf("Tail(2) = %q", got)
	}
}

// TestStopClean: a process that exits on SIGTERM is not killed.
func TestStopClean(t *testing.T) {
	p := shell(t, `trap 'exit 0' TERM; echo started; while :; do sleep 0.05; done`)
	if _, err := p.WaitLine(regexp.MustCompile(`started`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("Stop: %v, want exit status 0", err)
	}
}

// TestExitBeforeReady: a process that ends before its ready URL answers
// fails the wait at once, with its last output.
func TestExitBeforeReady(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := shell(t, `echo "cannot start: no database"; exit 3`, "http://"+addr+"/readyz")
	err = p.WaitReady(t.Context(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready: exit status 3") ||
		!strings.Contains(err.Error(), "cannot start: no database") {
		t.Errorf("WaitReady: %v", err)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServeAndWorker: serve and worker are ready once their /readyz say
// so, on the ports the harness chose, and end with exit status 0 on
// SIGTERM.
func TestServeAndWorker(t *testing.T) {
	SkipShort(t, "jobsd process")
	url := pgtest.NewDatabase(t)
	env := []string{"DATABASE_URL=" + url, "JOBS_LOG_LEVEL=warn"}
	api := Serve(t, Options{Env: append(env, "JOBS_AUTH_ISSUER=http://127.0.0.1:1", "JOBS_AUTH_CLIENT_IDS=proctest")})
	w := Worker(t, Options{Env: append(env, "JOBS_MODEL_PROVIDER=local")})
	if code := get(t, "http://"+api.Addr+"/readyz"); code != http.StatusOK {
		t.Errorf("serve's /readyz: %d", code)
	}
	if code := get(t, "http://"+w.MetricsAddr+"/readyz"); code != http.StatusOK {
		t.Errorf("worker's /readyz: %d", code)
	}
	for _, p := range []*Process{api, w} {
		if err := p.Stop(StopWithin); err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", p.Name, err, p.Tail(20))
		}
	}
}

// TestPortTaken: a serve whose given port is taken fails with the reason
// in its output, and is not retried on another port (the caller chose it).
func TestPortTaken(t *testing.T) {
	SkipShort(t, "jobsd process")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	_, err = StartServe(t.Context(), Options{Env: []string{"DATABASE_URL=" + pgtest.NewDatabase(t),
		"JOBS_ADDR=" + ln.Addr().String(), "JOBS_AUTH_ISSUER=http://127.0.0.1:1", "JOBS_AUTH_CLIENT_IDS=proctest"}})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("StartServe on a taken port: %v", err)
	}
}
