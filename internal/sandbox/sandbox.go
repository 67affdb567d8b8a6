// Package sandbox runs a function over untrusted bytes in a child process
// that can be killed: the same binary re-executed ([os.Executable]) with
// JOBSD_SANDBOX naming a function registered with [Register].
//
// Why a process: a goroutine cannot be stopped from outside. A parser that
// loops forever on a hostile file (github.com/ledongthuc/pdf follows a page
// tree that lists a node as its own child for ever), recurses a million
// levels deep or allocates gigabytes would hold its worker slot, a CPU and
// memory until the worker dies, whatever the job's context says. A child
// process can be killed at a deadline, on cancellation, or when its memory
// passes a limit, and it takes everything it allocated with it.
//
// # Wiring
//
// Every binary that calls [Run] must call [Main] first thing in main (and
// every test binary that does, from TestMain): in a child, Main runs the
// registered function and exits; in any other process it returns at once.
// Run refuses to start a child from a binary whose Main was not called,
// since that child would run the program (or the tests) from the start.
//
// # Protocol
//
// The parent writes the input to the child's stdin and closes it; the child
// writes its output to stdout and exits 0. Anything else (an exit status, a
// signal, more output than [Limits.MaxOutput]) is a failure; the parent
// reads at most MaxOutput bytes and kills a child that writes more.
//
// # Limits
//
// The child sets its own limits before it reads its input: RLIMIT_CPU a
// second above the wall-clock budget (a backstop should the parent be stopped
// or starved; the kernel kills the child at the hard limit), GOMEMLIMIT at 70%
// of the memory limit (the collector works harder before the parent's
// watcher has to kill), a goroutine stack cap of an eighth of it (deep
// recursion ends in a crash, not in gigabytes of stack) and GOMAXPROCS=1 (one child holds at
// most about one core). RLIMIT_AS is not used: the Go runtime and the race
// detector reserve far more address space than they use.
//
// The parent starts the child in its own process group with
// Pdeathsig=SIGKILL (a child never outlives a dead worker), polls its RSS
// every 25 ms from /proc/<pid>/statm and kills the whole group when the
// budget ends, when the context is done, or when RSS passes the limit. It
// always reaps the child and leaves no goroutine behind. The child's
// environment is an allow-list (no database URL, no API keys).
//
// Only Linux runs children; elsewhere Run returns [ErrUnsupported].
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Environment variables the parent sets for the child.
const (
	// EnvFunc names the registered function a child runs; its presence is
	// what makes a process a child.
	EnvFunc   = "JOBSD_SANDBOX"
	envCPU    = "JOBSD_SANDBOX_CPU_SECONDS"
	envMemory = "JOBSD_SANDBOX_MEMORY_BYTES"
)

// Func is a function a child runs: its input is what the parent wrote to
// stdin, its output goes to stdout. It reports its own errors inside its
// output; the sandbox only moves bytes.
type Func func(input []byte) []byte

var (
	mu       sync.Mutex
	registry = map[string]Func{}
	// hooked is set by Main: this binary handles EnvFunc, so a child
	// re-executed from it runs the function and not the program.
	hooked atomic.Bool
)

// Register makes f runnable by Run under name. Call it from an init
// function, so it is registered before Main runs in the child.
func Register(name string, f Func) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("sandbox: Register called twice for " + name)
	}
	registry[name] = f
}

func lookup(name string) Func {
	mu.Lock()
	defer mu.Unlock()
	return registry[name]
}

// IsChild reports whether this process is a sandbox child.
func IsChild() bool { return os.Getenv(EnvFunc) != "" }

// Limits bound one child.
type Limits struct {
	// Timeout is the wall-clock budget from the child's start; the child's
	// CPU-time limit is one second more. Zero means 30 s.
	Timeout time.Duration
	// Memory is the most resident memory the child may use, in bytes.
	// Zero means 512 MiB.
	Memory int64
	// MaxOutput is the most the parent reads from the child's stdout; a
	// child that writes more is killed. Zero means 8 MiB.
	MaxOutput int
}

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = 30 * time.Second
	}
	if l.Memory <= 0 {
		l.Memory = 512 << 20
	}
	if l.MaxOutput <= 0 {
		l.MaxOutput = 8 << 20
	}
	return l
}

// cpuSeconds is the child's RLIMIT_CPU for a wall-clock budget: whole
// seconds, rounded up, plus one, so the parent's deadline normally comes
// first and names the reason.
func cpuSeconds(timeout time.Duration) uint64 {
	return uint64((timeout+time.Second-1)/time.Second) + 1
}

// Stats describe one child run, whatever its outcome.
type Stats struct {
	// PeakRSS is the child's peak resident set size in bytes: the larger of
	// the kernel's ru_maxrss and what the watcher sampled.
	PeakRSS int64
	// Wall is from the child's start to its exit.
	Wall time.Duration
	// CPU is the child's user plus system CPU time.
	CPU time.Duration
}

// Reason says why a child was stopped for a limit.
type Reason string

// Reasons a child is stopped.
const (
	// ReasonTime: the wall-clock budget ended.
	ReasonTime Reason = "time"
	// ReasonMemory: resident memory passed Limits.Memory.
	ReasonMemory Reason = "memory"
	// ReasonCPU: the kernel killed the child at its CPU-time limit.
	ReasonCPU Reason = "cpu"
	// ReasonOutput: the child wrote more than Limits.MaxOutput.
	ReasonOutput Reason = "output"
	// ReasonCrash: the child died on its own (a signal, or a fatal runtime
	// error such as a stack overflow or running out of memory) without
	// writing a result. The input made a well-tested function die, so it is
	// treated like a limit: running it again would die again.
	ReasonCrash Reason = "crash"
)

// LimitError is returned by Run when the child was stopped or died: the
// input cannot be processed within the limits, and retrying will not help.
type LimitError struct {
	Reason Reason
	Stats  Stats
	// Detail is for the log: the exit status and the tail of the child's
	// stderr. Never show it to a client.
	Detail string
}

func (e *LimitError) Error() string {
	msg := fmt.Sprintf("sandbox: child stopped (%s) after %v, peak RSS %d MiB", e.Reason, e.Stats.Wall.Round(time.Millisecond), e.Stats.PeakRSS>>20)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// ErrUnsupported is returned by Run on systems where children cannot be
// started, watched and killed as described in the package documentation.
var ErrUnsupported = errors.New("sandbox: child processes need Linux")

// ErrNotHooked is returned by Run when this binary never called Main.
var ErrNotHooked = errors.New("sandbox: Main was not called in this binary (call sandbox.Main first in main and in TestMain)")

// childEnv is the child's environment: the sandbox's own variables plus an
// allow-list of the Go runtime's, so a parser exploit finds no secrets in
// its environment.
func childEnv(name string, lim Limits) []string {
	env := []string{
		EnvFunc + "=" + name,
		envCPU + "=" + strconv.FormatUint(cpuSeconds(lim.Timeout), 10),
		envMemory + "=" + strconv.FormatInt(lim.Memory, 10),
	}
	for _, k := range []string{"GODEBUG", "GOCOVERDIR", "GOTRACEBACK", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	// A binary built with -race sleeps a second before it exits (so late
	// reports get out); a child's exit is the end of its parse, so skip it.
	// Other builds ignore GORACE.
	return append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// tailBuffer keeps the last max bytes written to it (a child's stderr: the
// end of a Go crash report names the fatal error's goroutine, the start
// names the error, so both ends are kept).
type tailBuffer struct {
	max        int
	head, tail []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if len(b.tail) > b.max {
		b.tail = append(b.tail[:0], b.tail[len(b.tail)-b.max:]...)
	}
	return n, nil
}

func (b *tailBuffer) String() string {
	if len(b.tail) == 0 {
		return string(b.head)
	}
	return string(b.head) + " ... " + string(b.tail)
}

// peakPrefix starts the line in which a child reports its peak RSS.
const peakPrefix = "sandbox-peak-rss-bytes: "

// reportedPeak is the peak RSS a child wrote as its last stderr line, and
// removes that line (it is not part of a crash report); 0 if none.
func (b *tailBuffer) reportedPeak() int64 {
	buf := &b.head
	if len(b.tail) > 0 {
		buf = &b.tail
	}
	s := strings.TrimRight(string(*buf), "\n")
	i := strings.LastIndex(s, "\n"+peakPrefix)
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(s[i+1+len(peakPrefix):], 10, 64)
	if err != nil {
		return 0
	}
	*buf = (*buf)[:i]
	return n
}

// errTooMuchOutput stops the copy of a child's stdout at Limits.MaxOutput.
var errTooMuchOutput = errors.New("sandbox: child wrote too much output")

// cappedBuffer takes at most max bytes, then fails every write: exec's copy
// goroutine stops and closes the pipe, and the child's next write fails.
type cappedBuffer struct {
	max  int
	buf  []byte
	over atomic.Bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > b.max {
		b.over.Store(true)
		return 0, errTooMuchOutput
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}
