package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestVersion runs the built binary: `jobsd version` names the module and
// says what it knows of the revision, with no database or settings.
func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatalf("jobsd version: %v", err)
	}
	for _, want := range []string{"jobsd ", "\nmodule    github.com/jobsd/jobsd\n", "\nrevision  ", "\nmodified  ", "\ngo        go1."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("jobsd version lacks %q:\n%s", want, out)
		}
	}
}
