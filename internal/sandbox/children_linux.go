//go:build linux

package sandbox

import (
	"os"
	"strconv"
	"strings"
)

// Children lists the pids of this process's sandbox children that still
// exist, zombies included: the children that run this same executable (Run
// re-executes it), and any zombie child, whose executable can no longer be
// read. Tests use it to show that every child was killed and reaped; other
// children of a test process (a PostgreSQL server started from the binaries
// on PATH) are not the sandbox's and are not counted.
func Children() []int {
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return ChildrenOf(os.Getpid())
	}
	var out []int
	for _, pid := range ChildrenOf(os.Getpid()) {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if exe == self || (err != nil && !Running(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// ChildrenOf lists the pids of parent's children that still exist, zombies
// included.
func ChildrenOf(parent int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := stat(pid); ok && ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}

// Running reports whether pid exists and is not a zombie (an exited
// process whose parent has not reaped it yet).
func Running(pid int) bool {
	_, state, ok := stat(pid)
	return ok && state != "Z"
}

// stat reads the ppid and state from /proc/<pid>/stat ("pid (comm) state
// ppid ..."; comm may hold spaces and parentheses, so parse after the last
// ')').
func stat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}
