package proctest

import (
	"context"
	"testing"
	"time"
)

// StopWithin is how long a test's process gets to exit after SIGTERM at the
// test's end before it is SIGKILLed.
const StopWithin = 10 * time.Second

// Serve runs `jobsd serve` for t (StartServe), failing t if it does not
// become ready, and stops it when t ends.
func Serve(t testing.TB, o Options) *Process {
	t.Helper()
	return run(t, StartServe, o)
}

// Worker runs `jobsd worker` for t (StartWorker), as Serve does.
func Worker(t testing.TB, o Options) *Process {
	t.Helper()
	return run(t, StartWorker, o)
}

// Deliver runs `jobsd deliver` for t (StartDeliver), as Serve does.
func Deliver(t testing.TB, o Options) *Process {
	t.Helper()
	return run(t, StartDeliver, o)
}

// Dev runs `jobsd dev` for t (StartDev), as Serve does.
func Dev(t testing.TB, o Options) *Process {
	t.Helper()
	return run(t, StartDev, o)
}

func run(t testing.TB, start func(ctx context.Context, o Options) (*Process, error), o Options) *Process {
	t.Helper()
	p, err := start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(StopWithin) // how it ended is the test's question, when it has one
		if t.Failed() {
			t.Logf("%s: last output lines:\n%s", p.Name, p.Tail(30))
		}
	})
	return p
}

// SkipShort skips t under `go test -short`: the suites that run real
// processes for long (faults, soak, replicas, the image, the browser, the
// Lambda emulator) name themselves here, and -short leaves them out even
// where JOBS_TEST_REQUIRE_DOCKER or JOBS_TEST_REQUIRE_BROWSER would make a
// missing tool fail them.
func SkipShort(t testing.TB, suite string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("the %s suite does not run under -short", suite)
	}
}
