//go:build !linux

package sandbox

// Children returns nil: Run starts no children off Linux.
func Children() []int { return nil }

// Alive returns false: Run starts no children off Linux.
func Alive(pid int) bool { return false }
