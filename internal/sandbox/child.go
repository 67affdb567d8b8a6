package sandbox

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// exitSetup is a child's exit status when it could not run its function
// (unknown name, limits not applied, stdout closed): a fault of the
// sandbox, not of the input. Go's own fatal errors and panics exit 2.
const exitSetup = 3

// Main must be called first thing in main, and in TestMain of every test
// binary that calls Run. In a sandbox child (JOBSD_SANDBOX set) it applies
// the limits, runs the registered function over stdin, writes its output to
// stdout and exits; in any other process it only records that this binary
// is hooked and returns.
func Main() {
	hooked.Store(true)
	name := os.Getenv(EnvFunc)
	if name == "" {
		return
	}
	os.Exit(child(name))
}

func child(name string) int {
	f := lookup(name)
	if f == nil {
		fmt.Fprintf(os.Stderr, "sandbox: no function %q registered in this binary\n", name)
		return exitSetup
	}
	if err := applyLimits(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		return exitSetup
	}
	// The parent bounds the input (it wrote it), so reading all is fine.
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: reading input: %v\n", err)
		return exitSetup
	}
	if _, err := os.Stdout.Write(f(in)); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: writing output: %v\n", err)
		return exitSetup
	}
	reportPeak()
	return 0
}

// applyLimits sets the child's own limits from the parent's variables.
func applyLimits() error {
	// One core at most for the child, whatever the machine has.
	runtime.GOMAXPROCS(1)
	// The worker raises GOGC for its own tiny heap; a parser's heap is
	// what the memory limit is about, so collect at the normal pace.
	debug.SetGCPercent(100)
	mem, err := strconv.ParseInt(os.Getenv(envMemory), 10, 64)
	if err != nil || mem <= 0 {
		return fmt.Errorf("bad %s: %q", envMemory, os.Getenv(envMemory))
	}
	// A soft target below the parent's hard RSS limit: the collector runs
	// harder as the heap nears it, so a large but legitimate document
	// finishes instead of being killed.
	debug.SetMemoryLimit(mem * 7 / 10)
	// A stack overflow (a parser recursing once per nesting level of a
	// hostile file) should be a quick crash, not a gigabyte of stack. An
	// eighth of the limit: while a stack grows, its old and new copies are
	// both resident (and -race adds shadow memory), so overflowing a
	// 32 MiB stack peaked at 56 MiB RSS (-race: 3.3 times the cap).
	debug.SetMaxStack(int(min(max(mem/8, 16<<20), 1<<30)))
	cpu, err := strconv.ParseUint(os.Getenv(envCPU), 10, 64)
	if err != nil || cpu == 0 {
		return fmt.Errorf("bad %s: %q", envCPU, os.Getenv(envCPU))
	}
	return setCPULimit(cpu)
}
