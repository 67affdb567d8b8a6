//go:build !linux

package sandbox

import "context"

// Run returns ErrUnsupported: watching and killing a child as the package
// documentation describes (process groups, Pdeathsig, /proc, waitid
// without reaping) is written for Linux only.
func Run(ctx context.Context, name string, input []byte, lim Limits) ([]byte, Stats, error) {
	return nil, Stats{}, ErrUnsupported
}

func setCPULimit(seconds uint64) error { return ErrUnsupported }

func reportPeak() {}
