package proctest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Module is the module whose binary the harness runs.
const Module = "github.com/jobsd/jobsd"

// mainPackage is the jobsd command.
const mainPackage = Module + "/cmd/jobsd"

// binEnv names a jobsd binary built before the tests (make test builds one
// and passes it in), so that no test binary builds its own.
const binEnv = "JOBSD_BIN"

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary returns a jobsd binary for this test run: JOBSD_BIN when it is
// set, else one built from this module's source into the user's cache
// folder. The cached binary is keyed by a hash of the source files jobsd is
// built from (and go.mod, go.sum, the Go version and the build settings in
// the environment), and built under a file lock: `go test ./...` runs each
// package's tests as a process of its own, and the packages that start jobsd
// all want the same binary at the same moment; the first builds it, the
// others wait and take it. The result is computed once per process.
func Binary() (string, error) {
	binaryOnce.Do(func() { binaryPath, binaryErr = binary() })
	return binaryPath, binaryErr
}

func binary() (string, error) {
	if p := os.Getenv(binEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", binEnv, p, err)
		}
		fi, err := os.Stat(abs)
		if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w: build one with `go build -o FILE ./cmd/jobsd`, or unset it", binEnv, p, err)
		}
		return abs, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(root)
	if err != nil {
		return "", err
	}
	return cachedBuild(root, key)
}

// moduleRoot finds the folder of this module's go.mod, upward from the
// working folder (a package's folder under go test; bench/, a module of its
// own, lies inside it).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the %s module: %w", Module, err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working folder: set %s to a jobsd binary", Module, binEnv)
		}
		dir = parent
	}
}

// modulePath is the path a go.mod's module line declares.
func modulePath(gomod []byte) string {
	for line := range strings.Lines(string(gomod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// keyEnv are the settings in the environment that change what go build
// makes.
var keyEnv = []string{"GOFLAGS", "CGO_ENABLED", "GOEXPERIMENT", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOTOOLCHAIN"}

// sourceKey hashes what the jobsd binary is built from: the files of every
// package of this module that cmd/jobsd links (as `go list -deps` names
// them, embedded files included), go.mod and go.sum (the versions of
// everything else), the Go version and the build settings.
func sourceKey(root string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const format = `{{if .Module}}{{if eq .Module.Path "` + Module + `"}}{{.Dir}}` +
		`{{range .GoFiles}} {{.}}{{end}}{{range .CgoFiles}} {{.}}{{end}}{{range .SFiles}} {{.}}{{end}}` +
		`{{range .CFiles}} {{.}}{{end}}{{range .HFiles}} {{.}}{{end}}{{range .SysoFiles}} {{.}}{{end}}` +
		`{{range .EmbedFiles}} {{.}}{{end}}
{{end}}{{end}}`
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", format, mainPackage)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("list the source of %s: %w\n%s", mainPackage, err, stderr.Bytes())
	}
	h := sha256.New()
	// A hash's Write never fails.
	_, _ = fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, name := range keyEnv {
		_, _ = fmt.Fprintf(h, "%s=%s\n", name, os.Getenv(name))
	}
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, f := range fields[1:] {
			files = append(files, filepath.Join(fields[0], f))
		}
	}
	for _, f := range files {
		if err := hashFile(h, root, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// hashFile adds a file's path (relative to root, so that two clones of one
// commit share a binary) and content to h.
func hashFile(h io.Writer, root, path string) error {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		rel = path
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("hash the source of jobsd: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	// A hash's Write never fails.
	_, _ = fmt.Fprintf(h, "\x00%s\x00", filepath.ToSlash(rel))
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hash %s: %w", path, err)
	}
	return nil
}

// cacheDir is where built binaries are kept, one folder per source key.
func cacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "jobsd", "test-bin")
}

// keepFor is how long an unused cached binary stays: each is some 50 MB,
// and an edit of the source makes a new one.
const keepFor = 48 * time.Hour

// cachedBuild returns the binary for key, building it first (under the
// key's file lock) if no other process has.
func cachedBuild(root, key string) (string, error) {
	dir := cacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create the jobsd build cache: %w", err)
	}
	path := filepath.Join(dir, key, "jobsd")
	unlock, err := lockFile(filepath.Join(dir, key+".lock"))
	if err != nil {
		return "", fmt.Errorf("lock the jobsd build cache: %w", err)
	}
	defer unlock()
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		now := time.Now()
		_ = os.Chtimes(filepath.Dir(path), now, now) // in use: keep it from pruning
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("create the jobsd build cache: %w", err)
	}
	// Build beside the final name and rename, so that a binary found in
	// the cache is always whole.
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", tmp, mainPackage)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build jobsd: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("build jobsd: %w", err)
	}
	prune(dir, key)
	return path, nil
}

// prune removes cached binaries unused for keepFor, except key's.
func prune(dir, key string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == key {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < keepFor {
			continue
		}
		// A run that uses it touched it when it looked it up, and no run
		// lasts keepFor.
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
