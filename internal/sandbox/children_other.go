//go:build !linux

package sandbox

// Children returns nil: Run starts no children off Linux.
func Children() []int { return nil }

// ChildrenOf returns nil: Run starts no children off Linux.
func ChildrenOf(parent int) []int { return nil }

// Running returns false: Run starts no children off Linux.
func Running(pid int) bool { return false }
