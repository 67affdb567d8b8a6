//go:build !unix

package proctest

// lockFile does not lock where flock is missing: test binaries that build
// at once may each build the binary, and the last rename wins.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
