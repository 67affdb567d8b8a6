package pgserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Source names where a Server comes from.
type Source string

const (
	// SourceURL is a server given by the caller as a connection URL.
	SourceURL Source = "url"
	// SourceDocker is a container, started through the docker command line
	// or, in tests, through testcontainers-go (see [Options.Docker]).
	SourceDocker Source = "docker"
	// SourceBinaries is a temporary cluster made with initdb and postgres.
	SourceBinaries Source = "binaries"
)

// DefaultImage is the container image used when none is given.
const DefaultImage = "postgres:15"

// FixHint tells a user how to make a PostgreSQL server available.
const FixHint = "to fix: set JOBS_TEST_DATABASE_URL (or DATABASE_URL for jobsd dev) to a PostgreSQL URL, " +
	"or start Docker (with TESTCONTAINERS_RYUK_DISABLED=true where the Ryuk reaper cannot run), " +
	"or install the PostgreSQL server binaries so that initdb is on PATH (Debian: apt-get install postgresql)"

// Server is a running (or given) PostgreSQL server.
type Server struct {
	source    Source
	url       string
	closeFn   func() error
	closeOnce sync.Once
	closeErr  error
}

// NewServer returns a server of source at url whose Close calls closeFn (nil
// for nothing to stop). It lets a [DockerStarter] outside this package build
// its result.
func NewServer(source Source, url string, closeFn func() error) *Server {
	return &Server{source: source, url: url, closeFn: closeFn}
}

// Source reports where the server comes from.
func (s *Server) Source() Source { return s.source }

// URL returns the URL of the server's main database. Servers started by this
// package use sslmode=disable.
func (s *Server) URL() string { return s.url }

// DatabaseURL returns the URL of database name on the same server, keeping
// user, password, host, port and parameters.
func (s *Server) DatabaseURL(name string) string { return withDatabase(s.url, name) }

// Close terminates the container or stops the cluster and removes its folder.
// It is a no-op for a URL server and safe to call more than once.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		if s.closeFn != nil {
			s.closeErr = s.closeFn()
		}
	})
	return s.closeErr
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidName reports whether name is a safe database identifier:
// [a-z_][a-z0-9_]{0,62}.
func ValidName(name string) bool { return identRE.MatchString(name) }

// CreateDatabase creates database name, as a copy of template when template is
// non-empty, and returns its URL. Both names must satisfy [ValidName].
//
// PostgreSQL refuses to copy a template that has other open connections
// (SQLSTATE 55006, object_in_use): callers must close their connections to the
// template first. CreateDatabase retries that error for a few seconds to ride
// over connections that are still closing.
func (s *Server) CreateDatabase(ctx context.Context, name, template string) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("pgserver: invalid database name %q (want [a-z_][a-z0-9_]{0,62})", name)
	}
	stmt := `CREATE DATABASE "` + name + `"`
	if template != "" {
		if !ValidName(template) {
			return "", fmt.Errorf("pgserver: invalid template name %q (want [a-z_][a-z0-9_]{0,62})", template)
		}
		stmt += ` TEMPLATE "` + template + `"`
	}
	db, err := sql.Open("postgres", s.url)
	if err != nil {
		return "", fmt.Errorf("pgserver: open main database: %w", err)
	}
	defer db.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = db.ExecContext(ctx, stmt)
		var pqErr *pq.Error
		if err == nil || !errors.As(err, &pqErr) || pqErr.Code != "55006" || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("pgserver: %s: %w (last error: %w)", stmt, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return "", fmt.Errorf("pgserver: %s: %w", stmt, err)
	}
	return s.DatabaseURL(name), nil
}

// withDatabase replaces the database of a postgres:// URL or a key=value DSN.
func withDatabase(raw, name string) string {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	// key=value form: drop any dbname and append ours.
	var parts []string
	for _, f := range strings.Fields(raw) {
		if !strings.HasPrefix(f, "dbname=") {
			parts = append(parts, f)
		}
	}
	return strings.Join(append(parts, "dbname="+name), " ")
}

// Options configures [Start].
type Options struct {
	// URL, if non-empty, is used as the server (SourceURL) and nothing else is
	// tried (unless Require names another source).
	URL string
	// Order lists the sources to try when URL is empty, e.g.
	// {SourceDocker, SourceBinaries} for tests and {SourceBinaries,
	// SourceDocker} for jobsd dev. Empty means {SourceDocker, SourceBinaries}.
	Order []Source
	// Require, if set, is the only source that may be used; Start fails with
	// the reason when it does not work. With Require set to a source other
	// than SourceURL, URL is ignored.
	Require Source
	// Image is the container image; empty means DefaultImage.
	Image string
	// Docker starts SourceDocker; nil means [StartDockerCLI]. The test suites
	// set pgdocker.Start (testcontainers-go).
	Docker DockerStarter
	// Log, if non-nil, receives progress messages.
	Log func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// Start returns a server from the first source that works. If none works, the
// error lists every source tried, why it failed, and how to fix it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	order := opts.Order
	switch {
	case opts.Require == SourceURL:
		if opts.URL == "" {
			return nil, fmt.Errorf("pgserver: source %q required but no URL given; %s", SourceURL, FixHint)
		}
		order = []Source{SourceURL}
	case opts.Require != "":
		if opts.URL != "" {
			opts.logf("pgserver: source %s required; ignoring the given URL", opts.Require)
		}
		order = []Source{opts.Require}
	case opts.URL != "":
		order = []Source{SourceURL}
	case len(order) == 0:
		order = []Source{SourceDocker, SourceBinaries}
	}
	var failures []string
	for _, src := range order {
		begin := time.Now()
		srv, err := startSource(ctx, src, opts)
		if err == nil {
			opts.logf("pgserver: using %s server (ready in %s)", src, time.Since(begin).Round(time.Millisecond))
			return srv, nil
		}
		opts.logf("pgserver: %s: %v", src, err)
		failures = append(failures, fmt.Sprintf("  %s: %v", src, err))
		if ctx.Err() != nil {
			break
		}
	}
	what := "no PostgreSQL server available"
	if opts.Require != "" {
		what = fmt.Sprintf("required source %q failed", opts.Require)
	}
	return nil, fmt.Errorf("pgserver: %s; tried:\n%s\n%s", what, strings.Join(failures, "\n"), FixHint)
}

func startSource(ctx context.Context, src Source, opts Options) (*Server, error) {
	switch src {
	case SourceURL:
		if opts.URL == "" {
			return nil, errors.New("no URL given")
		}
		return &Server{source: SourceURL, url: opts.URL}, nil
	case SourceDocker:
		if opts.Docker == nil {
			return StartDockerCLI(ctx, opts.Image, opts.logf)
		}
		return opts.Docker(ctx, opts.Image, opts.logf)
	case SourceBinaries:
		return startBinaries(ctx, opts.logf, false)
	default:
		return nil, fmt.Errorf("unknown source %q", src)
	}
}
