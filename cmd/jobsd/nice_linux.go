package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// reniceThreads adds nice to the nice value this process started with (at
// most maxNice; never raising a priority) and sets the result on every
// thread: on Linux a nice value belongs to a thread, not to the process
// (setpriority with PRIO_PROCESS and a thread id), and a new thread
// inherits its creator's. The threads are listed again until a pass finds
// none not yet set, so that one the runtime started meanwhile, from a
// thread not yet set, is set too.
func reniceThreads(nice int) (from, to int, err error) {
	// getpriority(2)'s system call answers 20 - nice, which Go does not
	// convert; the process's main thread's id is its pid.
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, os.Getpid())
	if err != nil {
		return 0, 0, fmt.Errorf("getpriority: %w", err)
	}
	from = 20 - raw
	to = min(from+nice, maxNice)
	set := map[int]bool{}
	for {
		tids, err := threadIDs()
		if err != nil {
			return from, to, err
		}
		fresh := 0
		for _, tid := range tids {
			if set[tid] {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, to); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					continue // the thread ended meanwhile
				}
				return from, to, fmt.Errorf("setpriority of thread %d to %d: %w", tid, to, err)
			}
			set[tid] = true
			fresh++
		}
		if fresh == 0 {
			return from, to, nil
		}
	}
}

// threadIDs lists this process's threads (/proc/self/task).
func threadIDs() ([]int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
