package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

func runWait(g *globals, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("wait", stderr, g)
	setUsage(fs, "wait [--timeout 10m] ID", `
Waits until the job is COMPLETED or FAILED (long polling, or plain polls
when the server does not hold requests) and prints it as JSON on stdout.
While waiting, stderr shows the status, attempts and elapsed time: one line
rewritten in place on a terminal, else one line per change.

Exit status: 0 COMPLETED; 1 FAILED (the job's error is printed on stderr);
3 timeout or any other error.`)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	quiet := fs.Bool("q", false, "show no progress on stderr")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	id, code, ok := oneID(fs, stderr, pos)
	if !ok {
		return code
	}
	if *timeout <= 0 {
		return usageError(fs, stderr, "--timeout must be positive")
	}
	c, err := g.newClient()
	if err != nil {
		return fail(stderr, err)
	}
	ctx, cancel := context.WithTimeout(background(), *timeout)
	defer cancel()

	var opts []client.WaitOption
	var p *progress
	if !*quiet {
		p = newProgress(stderr, isTerminal(stderr))
		opts = append(opts, client.WithProgress(p.update))
	}
	job, err := c.Wait(ctx, id, opts...)
	if p != nil {
		p.stop()
	}
	var failed *client.JobFailedError
	switch {
	case errors.As(err, &failed):
		if perr := printJSON(stdout, job); perr != nil {
			return fail(stderr, perr)
		}
		fmt.Fprintf(stderr, "jobsctl: job %s FAILED after %d attempt(s): %s\n", job.Id, job.Attempts, failed.Message)
		return exitFailed
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "jobsctl: timed out after %v waiting for job %s\n", *timeout, id)
		return exitError
	case err != nil:
		return fail(stderr, err)
	}
	if err := printJSON(stdout, job); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress shows the job's state on stderr while Wait runs: on a terminal
// one line redrawn every second (so the elapsed time moves), else one line
// per change.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu   sync.Mutex
	job  *gen.Job
	done chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, start: time.Now(), done: make(chan struct{})}
	if tty {
		p.wg.Add(1)
		go p.tick()
	}
	return p
}

func (p *progress) line(j *gen.Job) string {
	elapsed := time.Since(p.start).Round(100 * time.Millisecond)
	if p.tty {
		elapsed = elapsed.Round(time.Second)
	}
	return fmt.Sprintf("%s  %-10s  attempts %d  elapsed %v", j.Id, j.Status, j.Attempts, elapsed)
}

// update is the WithProgress callback.
func (p *progress) update(j gen.Job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.job = &j
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(p.job))
	} else {
		fmt.Fprintln(p.w, p.line(p.job))
	}
}

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if p.job != nil {
				fmt.Fprintf(p.w, "\r\033[K%s", p.line(p.job))
			}
			p.mu.Unlock()
		}
	}
}

// stop ends the live line with a newline.
func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
	if p.tty && p.job != nil {
		fmt.Fprintln(p.w)
	}
}
