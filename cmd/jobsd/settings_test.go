package main

import (
	"bytes"
	"flag"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// retiring are variables the code still reads but the settings table no
// longer lists, because a change merged separately removes them. The test
// fails once the code stops reading one, so that its line here goes too.
var retiring = map[string]string{}

// TestSettingsTable keeps the table of environment variables (and so every
// command's -h) in step with the code of the jobsd binary.
func TestSettingsTable(t *testing.T) {
	read := envReadByBinary(t)
	listed := map[string]setting{}
	for _, s := range envSettings {
		if s.meaning == "" || len(s.commands) == 0 {
			t.Errorf("%s: a row needs a meaning and the commands that read it", s.name)
		}
		for _, c := range s.commands {
			if !slices.Contains([]string{"serve", "worker", "deliver", "lambda", "migrate", "token", "dev"}, c) {
				t.Errorf("%s: unknown command %q", s.name, c)
			}
		}
		if prev, ok := listed[s.name]; ok && (prev.pending == "") != (s.pending == "") {
			t.Errorf("%s: rows of one variable are all pending or none", s.name)
		}
		listed[s.name] = s
	}
	for _, name := range sortedKeys(read) {
		s, ok := listed[name]
		switch {
		case !ok && retiring[name] == "":
			t.Errorf("%s is read by %s but not in the settings table (cmd/jobsd/settings.go): add a row", name, read[name])
		case ok && s.pending != "":
			t.Errorf("%s is read by %s now: drop its pending mark and check its default and meaning", name, read[name])
		}
	}
	for _, name := range sortedKeys(listed) {
		if _, ok := read[name]; !ok && listed[name].pending == "" {
			t.Errorf("%s is in the settings table but the code does not read it: remove the row, or mark it pending", name)
		}
	}
	for name, why := range retiring {
		if _, ok := read[name]; !ok {
			t.Errorf("%s is no longer read (%s): remove it from retiring", name, why)
		}
	}
}

// envName is the shape of an environment variable.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

// envReadByBinary returns the environment variables that the packages of
// this module linked into jobsd read, with a file that reads each: the
// first argument of os.Getenv, os.LookupEnv, the env* helpers and getenv
// functions passed around (model.ConfigFromEnv), and whole "JOBS_..."
// string literals, which catch names kept in tables (the worker's
// durations). settings.go, the table itself, is left out.
func envReadByBinary(t *testing.T) map[string]string {
	t.Helper()
	const module = "github.com/jobsd/jobsd"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string]bool{"Getenv": true, "LookupEnv": true, "envOr": true, "envInt": true, "envDuration": true, "envRate": true, "getenv": true}
	read := map[string]string{}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	var visit func(dir string)
	visit = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, name := range pkg.GoFiles {
			path := filepath.Join(dir, name)
			rel, _ := filepath.Rel(root, path)
			if rel == filepath.Join("cmd", "jobsd", "settings.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					if !readers[calleeName(n.Fun)] || len(n.Args) == 0 {
						return true
					}
					if name, ok := stringLit(n.Args[0]); ok && envName.MatchString(name) {
						read[name] = rel
						if calleeName(n.Fun) == "envRate" { // it reads NAME and NAME_BURST
							read[name+"_BURST"] = rel
						}
					}
				case *ast.BasicLit:
					if name, ok := stringLit(n); ok && strings.HasPrefix(name, "JOBS_") && envName.MatchString(name) {
						read[name] = rel
					}
				}
				return true
			})
		}
		for _, imp := range pkg.Imports {
			if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
				visit(filepath.Join(root, filepath.FromSlash(rest)))
			}
		}
	}
	visit(filepath.Join(root, "cmd", "jobsd"))
	if len(read) < 10 {
		t.Fatalf("found only %d variables read: the scan is broken", len(read))
	}
	return read
}

func calleeName(fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestUsage runs `jobsd CMD -h`: it exits 0 and lists the flags, then the
// variables that command reads and none that it does not.
func TestUsage(t *testing.T) {
	tests := []struct {
		cmd           string
		want, notWant []string
	}{
		{"serve", []string{"-addr", "-database-url", "DATABASE_URL", "JOBS_AUTH_ISSUER", "JOBS_RATE_READ_BURST", "(default: 8388608)", "JOBS_PPROF_ADDR"}, []string{"JOBS_WORKER_LEASE", "JOBS_DEV_KEY"}},
		{"worker", []string{"-database-url", "JOBS_WORKER_LEASE", "(default: 30s)", "JOBS_MODEL_PROVIDER", "GOGC"}, []string{"JOBS_AUTH_ISSUER", "JOBS_ADDR", "JOBS_WORKER_LOCK_WINDOW"}},
		{"dev", []string{"-addr", "JOBS_DEV_KEY", "JOBS_WORKER_LEASE", "JOBS_CORS_ORIGINS", "(default: 127.0.0.1:8080)"}, []string{"JOBS_AUTH_ISSUER", "GOGC", "JOBS_PPROF_ADDR"}},
		{"lambda", []string{"-database-url", "JOBS_SQS_QUEUE_URL", "JOBS_LAMBDA_RESERVE", "JOBS_WORKER_JOB_TIMEOUT", "AWS_LAMBDA_RUNTIME_API"}, []string{"JOBS_AUTH_ISSUER", "JOBS_WORKER_POLL", "JOBS_DISPATCH", "GOGC"}},
		{"deliver", []string{"-database-url", "JOBS_WEBHOOK_NICE", "(default: 10)", "JOBS_WEBHOOK_TIMEOUT", "JOBS_METRICS_ADDR", "JOBS_DB_MAX_CONNS"}, []string{"JOBS_WEBHOOK_DELIVERY", "JOBS_AUTH_ISSUER", "JOBS_ADDR", "JOBS_WORKER_LEASE"}},
		{"migrate", []string{"up|down|status", "-database-url", "DATABASE_URL"}, []string{"JOBS_LOG_LEVEL"}},
		{"token", []string{"-sub", "JOBS_DEV_KEY", "JOBS_ADDR"}, []string{"DATABASE_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			out, err := exec.Command(binary, tt.cmd, "-h").CombinedOutput()
			if err != nil {
				t.Fatalf("jobsd %s -h: %v\n%s", tt.cmd, err, out)
			}
			flags, env, ok := strings.Cut(string(out), "\nEnvironment (flags win over it):\n")
			if !ok {
				t.Fatalf("no environment section:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(env, "  "+w+"\n") {
					t.Errorf("lists %s, which %s does not read", w, tt.cmd)
				}
			}
			if !strings.Contains(flags, "Flags:\n") {
				t.Errorf("no flags section:\n%s", out)
			}
		})
	}
}

var updateDocs = flag.Bool("update", false, "rewrite docs/configuration.md from the settings table")

// TestConfigurationReference holds docs/configuration.md to the settings
// table: `make docs` (this test with -update) rewrites it.
func TestConfigurationReference(t *testing.T) {
	var want bytes.Buffer
	writeReference(&want)
	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *updateDocs {
		if err := os.WriteFile(path, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("docs/configuration.md differs from the settings table in cmd/jobsd/settings.go: run `make docs` and commit it")
	}
}
