package pgserver

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func exercise(t *testing.T, srv *Server) {
	t.Helper()
	ctx := context.Background()
	u, err := srv.CreateDatabase(ctx, "first_db", "")
	if err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if u != srv.DatabaseURL("first_db") {
		t.Fatalf("CreateDatabase URL %q != DatabaseURL %q", u, srv.DatabaseURL("first_db"))
	}
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE jobs (id int primary key, name text); INSERT INTO jobs VALUES (1, 'hello')`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var got string
	if err := db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&got); err != nil || got != "first_db" {
		t.Fatalf("current_database = %q, %v", got, err)
	}
	db.Close() // the template must have no other connections

	u2, err := srv.CreateDatabase(ctx, "second_db", "first_db")
	if err != nil {
		t.Fatalf("CreateDatabase from template: %v", err)
	}
	db2, err := sql.Open("postgres", u2)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.QueryRowContext(ctx, `SELECT name FROM jobs WHERE id = 1`).Scan(&got); err != nil || got != "hello" {
		t.Fatalf("copied table: got %q, %v", got, err)
	}
	if _, err := srv.CreateDatabase(ctx, `bad"name`, ""); err == nil {
		t.Fatal("CreateDatabase accepted an unsafe name")
	}
}

func TestStartBinaries(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Fatalf("PostgreSQL server binaries are required for this test (install postgresql so initdb is on PATH): %v", err)
	}
	begin := time.Now()
	srv, err := StartBinaries(context.Background())
	if err != nil {
		t.Fatalf("StartBinaries: %v", err)
	}
	t.Logf("binaries server ready in %s: %s", time.Since(begin).Round(time.Millisecond), srv.URL())
	if srv.Source() != SourceBinaries {
		t.Fatalf("Source = %q", srv.Source())
	}
	c := srv.closeFn
	if c == nil {
		t.Fatal("no close function")
	}
	exercise(t, srv)
	dir := dirOf(t, srv)
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s behind (stat: %v)", dir, err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// dirOf finds the cluster folder through the server's data_directory.
func dirOf(t *testing.T, srv *Server) string {
	t.Helper()
	db, err := sql.Open("postgres", srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var data string
	if err := db.QueryRow(`SHOW data_directory`).Scan(&data); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(data, "/data")
}

// requireDocker skips the test when Docker is unreachable (the one allowed
// skip), and fails it instead under JOBS_TEST_REQUIRE_DOCKER=1.
func requireDocker(t *testing.T) {
	t.Helper()
	if err := DockerAvailable(t.Context()); err != nil {
		if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatalf("Docker is required (JOBS_TEST_REQUIRE_DOCKER=1): %v", err)
		}
		t.Skipf("skipping: Docker is not reachable and JOBS_TEST_REQUIRE_DOCKER!=1 (the one allowed skip): %v", err)
	}
}

func TestStartDockerCLI(t *testing.T) {
	requireDocker(t)
	ctx := context.Background()
	image := testImage(ctx)
	begin := time.Now()
	srv, err := StartDockerCLI(ctx, image, t.Logf)
	if err != nil {
		t.Fatalf("StartDockerCLI(%s): %v", image, err)
	}
	t.Logf("docker server ready in %s: %s", time.Since(begin).Round(time.Millisecond), srv.URL())
	defer srv.Close()
	if srv.Source() != SourceDocker || !strings.HasPrefix(srv.URL(), "postgres://jobs:jobs@127.0.0.1:") {
		t.Fatalf("Source = %q, URL = %q", srv.Source(), srv.URL())
	}
	ids, err := dockerOutput(ctx, "ps", "-q", "--filter", "label="+ContainerLabel+"=true", "--filter", "publish="+portOf(t, srv.URL()))
	if err != nil || ids == "" {
		t.Fatalf("no running container labelled %s=true publishes %s (%v)", ContainerLabel, srv.URL(), err)
	}
	exercise(t, srv)
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := dockerOutput(ctx, "inspect", ids); err == nil {
		t.Fatalf("container %s still exists after Close", ids)
	}
}

func portOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func TestStartOrder(t *testing.T) {
	ctx := context.Background()
	t.Run("require binaries", func(t *testing.T) {
		srv, err := Start(ctx, Options{Require: SourceBinaries, Order: []Source{SourceDocker}, Log: t.Logf})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		defer srv.Close()
		if srv.Source() != SourceBinaries {
			t.Fatalf("Source = %q, want binaries", srv.Source())
		}
	})
	t.Run("url wins", func(t *testing.T) {
		srv, err := Start(ctx, Options{URL: "postgres://u:p@db.example:6543/main?sslmode=require"})
		if err != nil {
			t.Fatal(err)
		}
		if srv.Source() != SourceURL || srv.Close() != nil {
			t.Fatalf("Source = %q", srv.Source())
		}
		if got, want := srv.DatabaseURL("t1"), "postgres://u:p@db.example:6543/t1?sslmode=require"; got != want {
			t.Fatalf("DatabaseURL = %q, want %q", got, want)
		}
	})
	t.Run("docker only without docker", func(t *testing.T) {
		// Simulate a machine without the docker command so the failure path
		// is always tested.
		orig := dockerCLI
		dockerCLI = "jobsd-test-no-such-docker"
		defer func() { dockerCLI = orig }()
		begin := time.Now()
		_, err := Start(ctx, Options{Order: []Source{SourceDocker}})
		if err == nil {
			t.Fatal("Start succeeded without Docker")
		}
		for _, want := range []string{"docker: docker not reachable", "JOBS_TEST_DATABASE_URL", "start Docker", "initdb is on PATH"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("failing took %s", d)
		}
	})
	t.Run("falls through to binaries", func(t *testing.T) {
		noDocker := func(context.Context, string, func(string, ...any)) (*Server, error) {
			return nil, errors.New("docker not reachable: simulated")
		}
		srv, err := Start(ctx, Options{Order: []Source{SourceDocker, SourceBinaries}, Docker: noDocker})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if srv.Source() != SourceBinaries {
			t.Fatalf("Source = %q", srv.Source())
		}
	})
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://jobs:jobs@127.0.0.1:5432/jobs?sslmode=disable": "postgres://jobs:jobs@127.0.0.1:5432/x?sslmode=disable",
		"postgresql://h/":                    "postgresql://h/x",
		"host=h dbname=jobs sslmode=disable": "host=h sslmode=disable dbname=x",
	} {
		if got := withDatabase(in, "x"); got != want {
			t.Errorf("withDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

// testImage is $JOBS_TEST_POSTGRES_IMAGE, else DefaultImage when present
// locally, else the offline-built jobsd-test-postgres:15 when present locally,
// else DefaultImage (to be pulled).
func testImage(ctx context.Context) string {
	if img := os.Getenv("JOBS_TEST_POSTGRES_IMAGE"); img != "" {
		return img
	}
	for _, img := range []string{DefaultImage, "jobsd-test-postgres:15"} {
		if _, err := dockerOutput(ctx, "image", "inspect", img); err == nil {
			return img
		}
	}
	return DefaultImage
}
