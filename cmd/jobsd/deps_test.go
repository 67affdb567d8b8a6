package main

import (
	"testing"

	"github.com/jobsd/jobsd/internal/depcheck"
)

// TestLinksNoTestTooling holds the rule that jobsd ships no test tooling:
// `jobsd dev` starts its container through the docker command line, and only
// test binaries link testcontainers-go and the Docker client
// (internal/pgserver/pgdocker). Both what the package imports and what the
// built binary records are checked.
func TestLinksNoTestTooling(t *testing.T) {
	t.Run("go list -deps", func(t *testing.T) {
		pkgs, err := depcheck.Packages(".")
		if err != nil {
			t.Fatal(err)
		}
		if bad := depcheck.Matching(pkgs, depcheck.TestTooling...); len(bad) > 0 {
			t.Errorf("cmd/jobsd links %d test-tooling packages, e.g. %q; keep testcontainers behind internal/pgserver/pgdocker, imported by tests only", len(bad), bad[0])
		}
	})
	t.Run("go version -m", func(t *testing.T) {
		mods, err := depcheck.Modules(binary)
		if err != nil {
			t.Fatal(err)
		}
		if len(mods) == 0 {
			t.Fatal("the built jobsd records no dependency modules; cannot check")
		}
		if bad := depcheck.Matching(mods, depcheck.TestTooling...); len(bad) > 0 {
			t.Errorf("the jobsd binary links test-tooling modules %q", bad)
		}
	})
}
