package pgdocker

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/testcontainers/testcontainers-go"

	"github.com/jobsd/jobsd/internal/pgserver"
)

// TestMain disables the Ryuk reaper unless told otherwise: it cannot run on
// these machines, Close terminates the containers and they carry
// pgserver.ContainerLabel.
func TestMain(m *testing.M) {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		if err := os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

func TestStart(t *testing.T) {
	ctx := context.Background()
	if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") != "1" {
		if err := Available(ctx); err != nil {
			t.Skipf("skipping: Docker is not reachable and JOBS_TEST_REQUIRE_DOCKER!=1 (the one allowed skip): %v", err)
		}
	}
	image := testImage(ctx)
	begin := time.Now()
	srv, ctr, err := start(ctx, image, t.Logf)
	if err != nil {
		t.Fatalf("start(%s): %v", image, err)
	}
	t.Logf("docker server ready in %s: %s", time.Since(begin).Round(time.Millisecond), srv.URL())
	defer srv.Close()
	if srv.Source() != pgserver.SourceDocker || !strings.Contains(srv.URL(), "sslmode=disable") {
		t.Fatalf("Source = %q, URL = %q", srv.Source(), srv.URL())
	}
	insp, err := ctr.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if insp.Config.Labels[pgserver.ContainerLabel] != "true" {
		t.Fatalf("container labels %v lack %s=true", insp.Config.Labels, pgserver.ContainerLabel)
	}
	u, err := srv.CreateDatabase(ctx, "first_db", "")
	if err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	err = db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&got)
	db.Close()
	if err != nil || got != "first_db" {
		t.Fatalf("current_database = %q, %v", got, err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ctr.State(ctx); err == nil {
		t.Fatal("container still exists after Close")
	}
}

// TestRequireWithoutDocker checks that a test binary told to use only Docker
// fails, naming the reason and the fix, on a machine without it.
func TestRequireWithoutDocker(t *testing.T) {
	orig := probe
	probe = func(context.Context) error { return errors.New("docker not reachable: simulated") }
	defer func() { probe = orig }()
	_, err := pgserver.Start(context.Background(), pgserver.Options{
		URL: "postgres://ignored", Require: pgserver.SourceDocker, Docker: Start,
	})
	if err == nil {
		t.Fatal("Start succeeded without Docker")
	}
	for _, want := range []string{`required source "docker" failed`, "docker not reachable: simulated", "start Docker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// testImage is $JOBS_TEST_POSTGRES_IMAGE, else pgserver.DefaultImage when
// present locally, else the offline-built jobsd-test-postgres:15 when present
// locally, else pgserver.DefaultImage (to be pulled).
func testImage(ctx context.Context) string {
	if img := os.Getenv("JOBS_TEST_POSTGRES_IMAGE"); img != "" {
		return img
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return pgserver.DefaultImage
	}
	defer cli.Close()
	for _, img := range []string{pgserver.DefaultImage, "jobsd-test-postgres:15"} {
		if _, err := cli.ImageInspect(ctx, img); err == nil {
			return img
		}
	}
	return pgserver.DefaultImage
}
