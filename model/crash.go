package model

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// crashMarkers enables the crash markers. It is process-wide, not a
// provider's field, because what the markers do is process-wide: they kill
// the process.
var crashMarkers atomic.Bool

// AllowCrashMarkers turns the [[simulate:crash]] markers on or off for this
// process. They are off by default, since markers come from user text and a
// user must not be able to kill a production worker; tests and `jobsd dev`
// turn them on (JOBS_WORKER_CRASH_MARKERS).
func AllowCrashMarkers(on bool) { crashMarkers.Store(on) }

// crash kills this process at once, after delay, as a worker dying mid-job
// would: SIGKILL, so no deferred function, shutdown path or outcome write
// runs.
func crash(delay time.Duration) {
	if delay > 0 {
		time.Sleep(delay)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	os.Exit(137) // not reached where SIGKILL works
}
