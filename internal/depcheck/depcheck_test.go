package depcheck

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatching(t *testing.T) {
	list := []string{
		"github.com/jobsd/jobsd/store",
		"github.com/testcontainers/testcontainers-go",
		"github.com/docker/go-units",
		"github.com/moby/term",
		"github.com/containerd/log",
		"github.com/labstack/echo/v4",
	}
	tests := []struct {
		name  string
		words []string
		want  []string
	}{
		{"test tooling", TestTooling, list[1:5]},
		{"http server", HTTPServer, list[5:]},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Matching(list, tt.words...)); diff != "" {
				t.Errorf("Matching (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPackages lists a package of this module and checks that it and a
// standard-library dependency are there.
func TestPackages(t *testing.T) {
	pkgs, err := Packages(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"github.com/jobsd/jobsd/internal/depcheck", "os/exec"} {
		if len(Matching(pkgs, want)) == 0 {
			t.Errorf("go list -deps . lacks %s: %v", want, pkgs)
		}
	}
}
