//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollEvery is how often the parent samples the child's RSS. At the
// allocation rates of a Go program (a few GB/s at most, one core) a child
// can pass its limit by some tens of MiB before it is seen.
const pollEvery = 25 * time.Millisecond

// Run runs the function registered as name in a child process with input on
// its stdin, and returns what it wrote to stdout. It returns ctx.Err() when
// ctx ends first (the child is killed), a *LimitError when the child was
// stopped at a limit or died on its own, and another error when the child
// could not be started or run (a fault of the sandbox, not of the input).
// Stats are filled in every case where a child ran.
func Run(ctx context.Context, name string, input []byte, lim Limits) ([]byte, Stats, error) {
	if !hooked.Load() {
		return nil, Stats{}, ErrNotHooked
	}
	if err := ctx.Err(); err != nil {
		return nil, Stats{}, err
	}
	lim = lim.withDefaults()
	c, err := startChild(name, input, lim)
	if err != nil {
		return nil, Stats{}, err
	}
	reason, ctxErr := c.watch(ctx, lim)
	waitErr := c.reap()
	return c.result(reason, ctxErr, waitErr, lim)
}

// childRun is one child process of Run, with what the parent learns of it.
type childRun struct {
	cmd    *exec.Cmd
	pid    int
	out    *cappedBuffer
	stderr *tailBuffer
	exited chan struct{} // closed once the child has exited (not reaped)
	start  time.Time
	stats  Stats
}

// startChild starts this binary as the child that runs name on input, in a
// process group of its own, and starts waiting for it to exit.
func startChild(name string, input []byte, lim Limits) (*childRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: finding this binary: %w", err)
	}
	cmd := exec.Command(exe) //nolint:noctx // ctx is watched (childRun.watch), and its end kills the whole process group, not only the child
	cmd.Env = childEnv(name, lim)
	cmd.Stdin = bytes.NewReader(input)
	c := &childRun{cmd: cmd, out: &cappedBuffer{max: lim.MaxOutput}, stderr: &tailBuffer{max: 1024}, exited: make(chan struct{})}
	cmd.Stdout = c.out
	cmd.Stderr = c.stderr
	// Its own process group, so one kill reaches anything it started; and
	// SIGKILL when the worker dies, so no parse outlives its worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding the pipes open must not hold Wait.
	cmd.WaitDelay = time.Second

	c.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: starting child: %w", err)
	}
	c.pid = cmd.Process.Pid
	go func() {
		defer close(c.exited)
		waitExited(c.pid)
	}()
	return c, nil
}

// watch samples the child until it exits, ctx ends (ctxErr) or it reaches
// a limit (reason), and takes a last sample of its RSS.
func (c *childRun) watch(ctx context.Context, lim Limits) (reason Reason, ctxErr error) {
	tick := time.NewTicker(pollEvery)
	deadline := time.NewTimer(lim.Timeout)
watch:
	for {
		select {
		case <-c.exited:
			break watch
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break watch
		case <-deadline.C:
			reason = ReasonTime
			break watch
		case <-tick.C:
			if c.sample() > lim.Memory {
				reason = ReasonMemory
				break watch
			}
			if c.out.over.Load() {
				reason = ReasonOutput
				break watch
			}
		}
	}
	tick.Stop()
	deadline.Stop()
	c.sample()
	return reason, ctxErr
}

// sample reads the child's RSS and keeps the peak.
func (c *childRun) sample() int64 {
	rss := residentBytes(c.pid)
	c.stats.PeakRSS = max(c.stats.PeakRSS, rss)
	return rss
}

// reap kills the child's group, reaps the child and completes the stats;
// it returns cmd.Wait's error.
func (c *childRun) reap() error {
	// Kill the group in every case: the child is not reaped yet (waitExited
	// does not reap), so its pid, the group's id, cannot have been reused;
	// and nothing it started outlives it.
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	<-c.exited
	waitErr := c.cmd.Wait()
	c.stats.Wall = time.Since(c.start)
	if ps := c.cmd.ProcessState; ps != nil {
		c.stats.CPU = ps.UserTime() + ps.SystemTime()
	}
	// A child that exits by itself reports its own peak (VmHWM), which
	// covers one too short-lived for the watcher to sample. (The kernel's
	// ru_maxrss cannot serve: across vfork and exec it keeps the parent's
	// high-water mark.)
	c.stats.PeakRSS = max(c.stats.PeakRSS, c.stderr.reportedPeak())
	return waitErr
}

// result is Run's answer for a reaped child: its output, or why there is
// none.
func (c *childRun) result(reason Reason, ctxErr, waitErr error, lim Limits) ([]byte, Stats, error) {
	stats := c.stats
	detail := func() string {
		d := "exit: " + describe(c.cmd.ProcessState, waitErr)
		if s := strings.TrimSpace(c.stderr.String()); s != "" {
			d += "; stderr: " + s
		}
		return d
	}
	switch {
	case ctxErr != nil:
		return nil, stats, ctxErr
	case reason != "":
		return nil, stats, &LimitError{Reason: reason, Stats: stats, Detail: detail()}
	case c.out.over.Load():
		return nil, stats, &LimitError{Reason: ReasonOutput, Stats: stats, Detail: detail()}
	case waitErr == nil:
		return c.out.buf, stats, nil
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return nil, stats, fmt.Errorf("sandbox: child: %s", detail())
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		// Not our kill (we kill only after watch saw a reason, or after the
		// child exited): the kernel's, at the CPU-time limit or from the OOM
		// killer.
		if stats.CPU >= time.Duration(cpuSeconds(lim.Timeout))*time.Second-100*time.Millisecond {
			return nil, stats, &LimitError{Reason: ReasonCPU, Stats: stats, Detail: detail()}
		}
		return nil, stats, &LimitError{Reason: ReasonMemory, Stats: stats, Detail: detail()}
	case ws.Signaled(), ws.Exited() && ws.ExitStatus() == 2:
		// A signal (SIGSEGV, SIGXCPU, SIGPIPE...) or a Go fatal error or
		// panic: the input killed the function.
		return nil, stats, &LimitError{Reason: ReasonCrash, Stats: stats, Detail: detail()}
	default:
		return nil, stats, fmt.Errorf("sandbox: child failed: %s", detail())
	}
}

// describe is a short exit description for the log.
func describe(ps *os.ProcessState, waitErr error) string {
	if ps == nil {
		return fmt.Sprint(waitErr)
	}
	s := ps.String()
	if waitErr != nil && !errors.As(waitErr, new(*exec.ExitError)) {
		s += " (" + waitErr.Error() + ")"
	}
	return s
}

// waitExited blocks until the process has exited, without reaping it.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

var pageSize = int64(os.Getpagesize())

// residentBytes is the process's RSS from /proc/<pid>/statm (0 once it has
// exited or when it cannot be read).
func residentBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * pageSize
}

// reportPeak writes the child's peak RSS to stderr, where the parent's
// tailBuffer keeps it (the last line).
func reportPeak() {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for line := range strings.Lines(string(b)) {
		if kib, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kib), "kB")), 10, 64)
			if err == nil {
				fmt.Fprintf(os.Stderr, "\n%s%d\n", peakPrefix, n<<10)
			}
			return
		}
	}
}

// setCPULimit sets RLIMIT_CPU (soft and hard): at the hard limit the
// kernel sends SIGKILL. (Go ignores the soft limit's SIGXCPU unless asked.)
func setCPULimit(seconds uint64) error {
	lim := syscall.Rlimit{Cur: seconds, Max: seconds}
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &lim); err != nil {
		return fmt.Errorf("setting RLIMIT_CPU: %w", err)
	}
	return nil
}
