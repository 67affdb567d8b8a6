//go:build !linux

package main

import "errors"

// reniceThreads is Linux's only: elsewhere jobsd deliver keeps the
// priority it started with (start it under nice(1) instead).
func reniceThreads(int) (from, to int, err error) {
	return 0, 0, errors.New("lowering the priority of every thread is done on Linux only; start jobsd deliver under nice(1) instead")
}
