package proctest

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startOrphanSafe starts cmd so that the kernel SIGKILLs it when this
// process dies: a test binary killed by its timeout runs no cleanup, and
// its jobsd processes would otherwise live on, holding ports and database
// connections.
func startOrphanSafe(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The death signal follows the thread that started the child, so the
	// start runs on a thread that is not handed back to the runtime while
	// locked (Go ends a thread only when a goroutine exits locked to it).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}
