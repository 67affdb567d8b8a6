//go:build !linux

package proctest

import "os/exec"

// startOrphanSafe starts cmd; without Linux's parent-death signal a
// process whose test binary was killed outlives it.
func startOrphanSafe(cmd *exec.Cmd) error { return cmd.Start() }
