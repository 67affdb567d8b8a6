// Package pgdocker starts PostgreSQL in a container through testcontainers-go
// for the test suites. It is a package of its own so that only test binaries
// link testcontainers and the Docker client: pass [Start] as
// pgserver.Options.Docker. `jobsd dev` uses the docker command line instead
// (pgserver.StartDockerCLI).
package pgdocker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/jobsd/jobsd/internal/pgserver"
)

// Available reports, within a few seconds, whether testcontainers can reach a
// Docker daemon; the error says why not.
func Available(ctx context.Context) error { return probe(ctx) }

// probe is replaced in tests to simulate a machine without Docker.
var probe = probeDocker

func probeDocker(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	type result struct{ err error }
	ch := make(chan result, 1)
	go func() { // the client setup itself may ignore ctx; bound it anyway
		defer func() {
			// testcontainers panics when it finds no Docker host at all.
			if p := recover(); p != nil {
				ch <- result{fmt.Errorf("%v", p)}
			}
		}()
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err == nil {
			_, err = cli.Ping(ctx)
			cli.Close()
		}
		ch <- result{err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("docker not reachable: %w", r.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("docker not reachable: %w", ctx.Err())
	}
}

// Start starts PostgreSQL in a container of image (pgserver.DefaultImage when
// empty) with database, user and password "jobs", labelled
// pgserver.ContainerLabel. Close terminates it. It is a pgserver.DockerStarter.
func Start(ctx context.Context, image string, logf func(string, ...any)) (*pgserver.Server, error) {
	srv, _, err := start(ctx, image, logf)
	return srv, err
}

func start(ctx context.Context, image string, logf func(string, ...any)) (*pgserver.Server, *postgres.PostgresContainer, error) {
	if image == "" {
		image = pgserver.DefaultImage
	}
	if err := probe(ctx); err != nil {
		return nil, nil, err
	}
	if logf != nil {
		logf("pgserver: starting container from %s", image)
	}
	ctr, err := postgres.Run(ctx, image,
		postgres.WithDatabase("jobs"),
		postgres.WithUsername("jobs"),
		postgres.WithPassword("jobs"),
		testcontainers.WithLabels(map[string]string{pgserver.ContainerLabel: "true"}),
		// Docker's default /dev/shm is 64 MiB, which a parallel query's
		// shared memory outgrows on a table of a million rows ("could not
		// resize shared memory segment"); the official image's documentation
		// recommends raising it.
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) { hc.ShmSize = 512 << 20 }),
		testcontainers.WithWaitStrategyAndDeadline(60*time.Second,
			wait.ForLog("database system is ready to accept connections").WithOccurrence(2),
			wait.ForListeningPort("5432/tcp"),
		),
	)
	terminate := func() error {
		if ctr == nil {
			return nil
		}
		if err := testcontainers.TerminateContainer(ctr); err != nil {
			return fmt.Errorf("pgdocker: terminate container: %w", err)
		}
		return nil
	}
	if err != nil {
		_ = terminate()
		return nil, nil, explain(image, err)
	}
	u, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = terminate()
		return nil, nil, fmt.Errorf("container connection string: %w", err)
	}
	return pgserver.NewServer(pgserver.SourceDocker, u, terminate), ctr, nil
}

// explain adds the fix to the two start failures that have a known one.
func explain(image string, err error) error {
	if strings.Contains(err.Error(), "reaper") {
		return fmt.Errorf("start container from %s: %w (the Ryuk reaper could not start: set TESTCONTAINERS_RYUK_DISABLED=true; containers carry label %s=true for cleanup)", image, err, pgserver.ContainerLabel)
	}
	if strings.Contains(err.Error(), "external check") {
		return fmt.Errorf("start container from %s: %w (the published port is not reachable at the host testcontainers chose: set TESTCONTAINERS_HOST_OVERRIDE, e.g. to 127.0.0.1)", image, err)
	}
	return fmt.Errorf("start container from %s: %w", image, err)
}
