package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/sandbox"
)

// The functions these tests run in children. Each misbehaves in one way.
func init() {
	sandbox.Register("test-echo", func(in []byte) []byte { return append([]byte("echo:"), in...) })
	sandbox.Register("test-spin", func([]byte) []byte {
		for { //nolint:staticcheck // spinning is what this child is for
		}
	})
	sandbox.Register("test-sleep", func([]byte) []byte {
		// A child that never answers, yet stays alive an hour, past every limit (blocking forever would trip the runtime's deadlock check).
		time.Sleep(time.Hour)
		return nil
	})
	sandbox.Register("test-alloc", func([]byte) []byte {
		var keep [][]byte
		for {
			b := make([]byte, 8<<20)
			for i := range b { // touch every page so it is resident
				b[i] = 1
			}
			keep = append(keep, b) //nolint:staticcheck // kept only to stay resident
		}
	})
	sandbox.Register("test-flood", func([]byte) []byte {
		chunk := make([]byte, 1<<20)
		for {
			os.Stdout.Write(chunk)
		}
	})
	sandbox.Register("test-limits", func([]byte) []byte {
		var cpu syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_CPU, &cpu); err != nil {
			panic(err)
		}
		return fmt.Appendf(nil, "cpu=%d/%d memlimit=%d procs=%d", cpu.Cur, cpu.Max, debug.SetMemoryLimit(-1), runtime.GOMAXPROCS(0))
	})
	sandbox.Register("test-panic", func([]byte) []byte { panic("hostile input") })
	sandbox.Register("test-recurse", func([]byte) []byte { return recurse(0) })
	sandbox.Register("test-garbage-exit", func([]byte) []byte {
		os.Stdout.WriteString("half an answer")
		os.Exit(7)
		return nil
	})
	// test-spawn starts a grandchild that sleeps, writes its pid to the
	// file named by the input, then sleeps itself.
	sandbox.Register("test-spawn", func(in []byte) []byte {
		exe, _ := os.Executable()
		gc := exec.Command(exe)
		gc.Env = append(os.Environ(), sandbox.EnvFunc+"=test-sleep")
		if err := gc.Start(); err != nil {
			panic(err)
		}
		if err := os.WriteFile(string(in), []byte(strconv.Itoa(gc.Process.Pid)), 0o600); err != nil {
			panic(err)
		}
		// Alive an hour, past every limit: only the group kill ends it.
		time.Sleep(time.Hour)
		return nil
	})
}

//go:noinline
func recurse(n int) []byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n < 0 {
		return pad[:]
	}
	return recurse(n + 1)
}

func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// noLeaks fails unless, within a few seconds, this process has no child
// left and no more goroutines than before.
func noLeaks(t *testing.T, goroutinesBefore int) {
	t.Helper()
	err := eventually.Wait(5*time.Second, func() error {
		if kids, g := sandbox.Children(), runtime.NumGoroutine(); len(kids) > 0 || g > goroutinesBefore {
			return fmt.Errorf("children %v, goroutines %d (before %d)", kids, g, goroutinesBefore)
		}
		return nil
	})
	if err != nil {
		buf := make([]byte, 1<<16)
		t.Fatalf("left behind: %v\n%s", err, buf[:runtime.Stack(buf, true)])
	}
}

func TestRun(t *testing.T) {
	out, stats, err := sandbox.Run(context.Background(), "test-echo", []byte("hello"), sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "echo:hello" {
		t.Fatalf("output %q", out)
	}
	if stats.Wall <= 0 || stats.PeakRSS < 0 {
		t.Errorf("stats %+v", stats)
	}
}

func TestLimits(t *testing.T) {
	cases := []struct {
		name   string
		fn     string
		lim    sandbox.Limits
		reason sandbox.Reason
	}{
		{"endless loop hits the deadline", "test-spin", sandbox.Limits{Timeout: 500 * time.Millisecond}, sandbox.ReasonTime},
		{"sleeper hits the deadline", "test-sleep", sandbox.Limits{Timeout: 300 * time.Millisecond}, sandbox.ReasonTime},
		{"allocation passes the memory limit", "test-alloc", sandbox.Limits{Timeout: 20 * time.Second, Memory: 128 << 20}, sandbox.ReasonMemory},
		{"endless output", "test-flood", sandbox.Limits{Timeout: 20 * time.Second, MaxOutput: 1 << 20}, sandbox.ReasonOutput},
		{"panic", "test-panic", sandbox.Limits{}, sandbox.ReasonCrash},
		// 256 MiB caps the stack at 32 MiB: overflowing it (old and new
		// stack while it grows) stays well under the limit, even with -race.
		{"stack overflow", "test-recurse", sandbox.Limits{Memory: 256 << 20}, sandbox.ReasonCrash},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			start := time.Now()
			out, stats, err := sandbox.Run(context.Background(), c.fn, nil, c.lim)
			var le *sandbox.LimitError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v (output %d bytes), want a *LimitError", err, len(out))
			}
			if le.Reason != c.reason {
				t.Fatalf("reason %q, want %q (%v)", le.Reason, c.reason, err)
			}
			if c.lim.Timeout > 0 && time.Since(start) > c.lim.Timeout+5*time.Second {
				t.Errorf("took %v for a %v budget", time.Since(start), c.lim.Timeout)
			}
			if c.reason == sandbox.ReasonMemory && stats.PeakRSS <= c.lim.Memory {
				t.Errorf("peak RSS %d not over the limit %d", stats.PeakRSS, c.lim.Memory)
			}
			t.Logf("%v", err)
			noLeaks(t, before)
		})
	}
}

// TestChildLimits checks that a child runs under the limits it was given:
// RLIMIT_CPU one second above the rounded-up budget, GOMEMLIMIT at 70% of
// the memory limit, one P.
func TestChildLimits(t *testing.T) {
	out, _, err := sandbox.Run(context.Background(), "test-limits", nil, sandbox.Limits{Timeout: 2500 * time.Millisecond, Memory: 100 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("cpu=%d/%d memlimit=%d procs=1", 4, 4, (100<<20)*7/10)
	if string(out) != want {
		t.Fatalf("child reports %q, want %q", out, want)
	}
}

func TestCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var start time.Time
	go func() {
		start = time.Now()
		_, _, err := sandbox.Run(ctx, "test-spin", nil, sandbox.Limits{Timeout: time.Minute})
		done <- err
	}()
	// Cancel once the child is running.
	eventually.True(t, 10*time.Second, "the child running", func() bool { return len(sandbox.Children()) > 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		t.Logf("returned %v after start", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancellation")
	}
	noLeaks(t, before)
}

func TestProcessGroupKilled(t *testing.T) {
	before := runtime.NumGoroutine()
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	_, _, err := sandbox.Run(context.Background(), "test-spawn", []byte(pidFile), sandbox.Limits{Timeout: time.Second})
	var le *sandbox.LimitError
	if !errors.As(err, &le) || le.Reason != sandbox.ReasonTime {
		t.Fatalf("err = %v, want a time limit", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the child never started its grandchild: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The group kill reached the grandchild too (it was reparented when
	// its parent died, so it is not ours to reap).
	eventually.True(t, 10*time.Second, "the grandchild gone", func() bool { return !sandbox.Running(pid) })
	noLeaks(t, before)
}

func TestChildFailures(t *testing.T) {
	_, _, err := sandbox.Run(context.Background(), "test-garbage-exit", nil, sandbox.Limits{})
	var le *sandbox.LimitError
	if err == nil || errors.As(err, &le) {
		t.Fatalf("exit 7 after half an answer: err = %v, want a plain failure", err)
	}
	_, _, err = sandbox.Run(context.Background(), "no-such-function", nil, sandbox.Limits{})
	if err == nil || errors.As(err, &le) || !strings.Contains(err.Error(), "no function") {
		t.Fatalf("unknown function: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := sandbox.Run(ctx, "test-echo", nil, sandbox.Limits{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err = %v", err)
	}
}
