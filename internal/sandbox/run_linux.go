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
	exe, err := os.Executable()
	if err != nil {
		return nil, Stats{}, fmt.Errorf("sandbox: finding this binary: %w", err)
	}
	cmd := exec.Command(exe) //nolint:noctx // ctx is watched below, and its end kills the whole process group, not only the child
	cmd.Env = childEnv(name, lim)
	cmd.Stdin = bytes.NewReader(input)
	out := &cappedBuffer{max: lim.MaxOutput}
	cmd.Stdout = out
	stderr := &tailBuffer{max: 1024}
	cmd.Stderr = stderr
	// Its own process group, so one kill reaches anything it started; and
	// SIGKILL when the worker dies, so no parse outlives its worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding the pipes open must not hold Wait.
	cmd.WaitDelay = time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, Stats{}, fmt.Errorf("sandbox: starting child: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		waitExited(pid)
	}()

	var (
		stats  Stats
		reason Reason
		ctxErr error
	)
	sample := func() int64 {
		rss := residentBytes(pid)
		stats.PeakRSS = max(stats.PeakRSS, rss)
		return rss
	}
	tick := time.NewTicker(pollEvery)
	deadline := time.NewTimer(lim.Timeout)
watch:
	for {
		select {
		case <-exited:
			break watch
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break watch
		case <-deadline.C:
			reason = ReasonTime
			break watch
		case <-tick.C:
			if sample() > lim.Memory {
				reason = ReasonMemory
				break watch
			}
			if out.over.Load() {
				reason = ReasonOutput
				break watch
			}
		}
	}
	tick.Stop()
	deadline.Stop()
	sample()
	// Kill the group in every case: the child is not reaped yet (waitExited
	// does not reap), so its pid, the group's id, cannot have been reused;
	// and nothing it started outlives it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
	waitErr := cmd.Wait()
	stats.Wall = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		stats.CPU = ps.UserTime() + ps.SystemTime()
	}
	// A child that exits by itself reports its own peak (VmHWM), which
	// covers one too short-lived for the watcher to sample. (The kernel's
	// ru_maxrss cannot serve: across vfork and exec it keeps the parent's
	// high-water mark.)
	stats.PeakRSS = max(stats.PeakRSS, stderr.reportedPeak())

	detail := func() string {
		d := "exit: " + describe(cmd.ProcessState, waitErr)
		if s := strings.TrimSpace(stderr.String()); s != "" {
			d += "; stderr: " + s
		}
		return d
	}
	switch {
	case ctxErr != nil:
		return nil, stats, ctxErr
	case reason != "":
		return nil, stats, &LimitError{Reason: reason, Stats: stats, Detail: detail()}
	case out.over.Load():
		return nil, stats, &LimitError{Reason: ReasonOutput, Stats: stats, Detail: detail()}
	case waitErr == nil:
		return out.buf, stats, nil
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return nil, stats, fmt.Errorf("sandbox: child: %s", detail())
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		// Not our kill (we kill only after the loop above saw a reason, or
		// after the child exited): the kernel's, at the CPU-time limit or
		// from the OOM killer.
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
