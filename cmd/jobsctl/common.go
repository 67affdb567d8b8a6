package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jobsd/jobsd/client"
)

// defaultURL is the API of `make run`.
const defaultURL = "http://127.0.0.1:8080"

// globals are the connection flags, accepted before and after the command.
type globals struct {
	url, token string
}

// newFlagSet returns a flag set with the connection flags bound to g.
func newFlagSet(name string, stderr io.Writer, g *globals) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if g.url == "" {
		g.url = envOr("JOBS_URL", defaultURL)
	}
	if g.token == "" {
		g.token = os.Getenv("JOBS_TOKEN")
	}
	fs.StringVar(&g.url, "url", g.url, "API base `URL` (env JOBS_URL)")
	fs.Var(secret{&g.token}, "token", "bearer `token` (env JOBS_TOKEN)")
	return fs
}

// secret is a string flag whose value -h never shows.
type secret struct{ p *string }

func (s secret) String() string { return "" }

func (s secret) Set(v string) error { *s.p = v; return nil }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parse parses args; ok is false when the caller should return code (0 for
// -h, 2 for a bad flag).
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	}
	return 0, true
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (e.g. `wait ID --timeout 1m`) and returns the latter.
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if code, ok := parse(fs, args); !ok {
			return nil, code, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// setUsage gives fs a usage text: a synopsis, a description and the flags.
func setUsage(fs *flag.FlagSet, synopsis, description string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  jobsctl %s\n\n%s\n", synopsis, strings.TrimSpace(description))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
}

// usageError reports a usage problem on stderr and returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "jobsctl %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fmt.Fprintf(stderr, "Run 'jobsctl %s -h' for usage.\n", fs.Name())
	return exitUsage
}

// fail reports err on stderr and returns exitError.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "jobsctl:", err)
	return exitError
}

// newClient connects to the API the flags or environment name.
func (g *globals) newClient() (*client.Client, error) {
	var opts []client.Option
	if g.token != "" {
		opts = append(opts, client.WithToken(g.token))
	}
	opts = append(opts, client.WithUserAgent("jobsctl/1"))
	return client.New(g.url, opts...)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// oneID checks that exactly one job id was given.
func oneID(fs *flag.FlagSet, stderr io.Writer, pos []string) (string, int, bool) {
	if len(pos) != 1 {
		return "", usageError(fs, stderr, "want exactly one job ID, got %d arguments", len(pos)), false
	}
	if _, err := client.ParseID(pos[0]); err != nil {
		return "", usageError(fs, stderr, "%q is not a job ID (a UUID like 550e8400-e29b-41d4-a716-446655440000)", pos[0]), false
	}
	return pos[0], 0, true
}

var background = context.Background
