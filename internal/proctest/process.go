// Package proctest runs jobsd as real processes for tests and the benchmark:
// one binary per test run (Binary), `serve`, `worker` and `dev` started on
// free loopback ports and taken as ready when their /readyz answers 200 (the
// API's, and the metrics listener's for the worker), their output kept so
// that a failure shows its last lines, and a stop that sends SIGTERM and,
// after a deadline, SIGKILL.
//
// The functions that return errors (StartServe, Launch, ...) serve the
// benchmark, which is not a test; Serve, Worker and Dev wrap them for tests,
// failing the test and stopping the process at its end.
package proctest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says how to run a process.
type Spec struct {
	// Name names the process in messages and echoed lines ("serve-2").
	Name string
	// Path is the executable; empty: Binary().
	Path string
	Args []string
	// BaseEnv is the environment Env adds to; nil: this process's.
	BaseEnv []string
	// Env is added after BaseEnv, so its entries win.
	Env []string
	// Ready are URLs that answer 200 once the process is ready (its
	// /readyz); with none it is ready once started.
	Ready []string
	// Observe, when set, is called with each line the process writes (to
	// stdout or stderr), in order, from one goroutine.
	Observe func(line string)
	// Echo, when set, gets each line as "[name] line".
	Echo io.Writer
}

// Process is a running (or ended) process. Its output, stdout and stderr
// together, is kept: the last keptLines lines.
type Process struct {
	// Name is Spec.Name.
	Name string
	// Cmd is the started command; wait for it with Wait, never Cmd.Wait.
	Cmd *exec.Cmd
	// Addr is the API's host:port (serve, dev).
	Addr string
	// MetricsAddr is the metrics listener's host:port (worker and dev
	// always; serve when JOBS_METRICS_ADDR was given).
	MetricsAddr string

	ready    []string
	done     chan struct{}
	err      error // Cmd.Wait's, once done is closed
	logsDone chan struct{}

	mu    sync.Mutex
	lines []string
}

// keptLines is how much output a Process keeps.
const keptLines = 2000

// Launch starts the process and returns at once; WaitReady waits for it.
func Launch(s Spec) (*Process, error) {
	path := s.Path
	if path == "" {
		var err error
		if path, err = Binary(); err != nil {
			return nil, err
		}
	}
	base := s.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	// One pipe for stdout and stderr keeps their lines in the order written.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	// The process outlives any one request; Stop ends it.
	cmd := exec.CommandContext(context.Background(), path, s.Args...)
	cmd.Env = append(append([]string(nil), base...), s.Env...)
	cmd.Stdout, cmd.Stderr = w, w
	err = startOrphanSafe(cmd)
	_ = w.Close() // the child holds its own copy
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{Name: s.Name, Cmd: cmd, ready: s.Ready, done: make(chan struct{}), logsDone: make(chan struct{})}
	go p.read(r, s.Observe, s.Echo)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// read keeps the process's output lines until the pipe closes.
func (p *Process) read(r *os.File, observe func(string), echo io.Writer) {
	defer close(p.logsDone)
	defer func() { _ = r.Close() }()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.lines) >= keptLines {
			p.lines = append(p.lines[:0], p.lines[keptLines/2:]...)
		}
		p.lines = append(p.lines, line)
		p.mu.Unlock()
		if observe != nil {
			observe(line)
		}
		if echo != nil {
			_, _ = fmt.Fprintf(echo, "[%s] %s\n", p.Name, line) // an echo that fails loses only the echo
		}
	}
}

// readyPoll is how often WaitReady asks.
const readyPoll = 20 * time.Millisecond

// WaitReady waits until every ready URL answers 200, and fails if the
// process exits first, or within passes, or ctx ends.
func (p *Process) WaitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	pending := append([]string(nil), p.ready...)
	var last error
	for {
		pending = notReady(ctx, hc, pending, &last)
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %w\n%s", p.Name, exitError(p.err), p.Tail(40))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v (%s: %w)\n%s", p.Name, within, pending[0], last, p.Tail(40))
		case <-time.After(readyPoll):
		}
	}
}

// exitError is how a process ended, as an error even for exit status 0.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// notReady returns the URLs of urls that do not answer 200 yet,
// setting last to why the first of them did not.
func notReady(ctx context.Context, hc *http.Client, urls []string, last *error) []string {
	var left []string
	for _, u := range urls {
		if err := getOK(ctx, hc, u); err != nil {
			if len(left) == 0 {
				*last = err
			}
			left = append(left, u)
		}
	}
	return left
}

func getOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (Cmd.Wait's error: nil for exit status 0);
// nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits for the process to exit and returns Err.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Kill SIGKILLs the process and waits for it.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL) // it may have exited already; done says when it has
	<-p.done
}

// Stop sends SIGTERM and waits up to within for the process to exit, then
// SIGKILLs it; it returns how the process ended. A process that had
// already exited is left as it is.
func (p *Process) Stop(within time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM) // it may exit meanwhile
	select {
	case <-p.done:
	case <-time.After(within):
		p.Kill()
	}
	return p.err
}

// Lines returns the output lines kept so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Tail returns the last n output lines. Once the process has exited, it
// first lets the reader take what was still in the pipe.
func (p *Process) Tail(n int) string {
	if p.Exited() {
		select {
		case <-p.logsDone:
		case <-time.After(time.Second): // a child of the process may hold the pipe
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// errNoLine is WaitLine's error when no line matched in time.
var errNoLine = errors.New("no such line")

// WaitLine waits up to within for an output line that re matches, and
// returns its submatches. It reads what the process prints (a token, a
// URL), not whether the process is ready: that is WaitReady's.
func (p *Process) WaitLine(re *regexp.Regexp, within time.Duration) ([]string, error) {
	deadline := time.Now().Add(within)
	for {
		exited := p.Exited()
		if exited {
			p.Tail(0) // lets the reader drain the pipe
		}
		for _, l := range p.Lines() {
			if m := re.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		}
		if exited || time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %w matching %s within %v\n%s", p.Name, errNoLine, re, within, p.Tail(40))
		}
		time.Sleep(readyPoll)
	}
}
