package client

import (
	"testing"

	"github.com/jobsd/jobsd/internal/depcheck"
)

// TestLinksNoServer holds the rule that a program importing the client links
// no server code: neither echo nor kin-openapi (the client is generated into
// gen/apiclient, apart from the server interface in gen/server).
func TestLinksNoServer(t *testing.T) {
	pkgs, err := depcheck.Packages(".")
	if err != nil {
		t.Fatal(err)
	}
	if bad := depcheck.Matching(pkgs, depcheck.HTTPServer...); len(bad) > 0 {
		t.Errorf("client/ links %d server packages: %q", len(bad), bad)
	}
}
