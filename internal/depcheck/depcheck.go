// Package depcheck lists what a package or a built binary links, so a test
// can hold a dependency rule ("the jobsd binary links no test tooling", "the
// client links no server") instead of a reviewer.
package depcheck

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// TestTooling names the test tooling a production binary must not link:
// testcontainers-go and the Docker client libraries it pulls in.
var TestTooling = []string{"testcontainers", "docker", "moby", "containerd"}

// HTTPServer names the server side of the contract: the echo framework and
// the kin-openapi validator.
var HTTPServer = []string{"github.com/labstack/echo", "github.com/getkin/kin-openapi"}

// Packages returns the import paths of pkg and every package it links
// (`go list -deps`, tests excluded). pkg is a go list pattern, e.g. "." or
// "github.com/jobsd/jobsd/client".
func Packages(pkg string) ([]string, error) {
	out, err := run("go", "list", "-deps", pkg)
	if err != nil {
		return nil, fmt.Errorf("list the dependencies of %s: %w", pkg, err)
	}
	return lines(out), nil
}

// Modules returns the module paths recorded in a built binary's build
// information (`go version -m`): the modules whose packages it links.
func Modules(binary string) ([]string, error) {
	out, err := run("go", "version", "-m", binary)
	if err != nil {
		return nil, fmt.Errorf("read the build information of %s: %w", binary, err)
	}
	var mods []string
	for _, line := range lines(out) {
		// "\tdep\tpath\tversion\tsum" and "\t=>\tpath\tversion\tsum" name modules.
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "dep" || f[0] == "=>") {
			mods = append(mods, f[1])
		}
	}
	return mods, nil
}

// Matching returns the entries of list that contain any of words.
func Matching(list []string, words ...string) []string {
	var hits []string
	for _, p := range list {
		for _, w := range words {
			if strings.Contains(p, w) {
				hits = append(hits, p)
				break
			}
		}
	}
	return hits
}

func run(name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...) //nolint:noctx // a quick go command for a test, which bounds it
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func lines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out
}
