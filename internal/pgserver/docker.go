package pgserver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

// ContainerLabel is set to "true" on every container this package starts, so
// leftovers can be removed by label when the Ryuk reaper is disabled.
const ContainerLabel = "jobsd.test"

// dockerProbe is replaced in tests to simulate a machine without Docker.
var dockerProbe = probeDocker

// DockerAvailable reports, within a few seconds, whether a Docker daemon can
// be reached; the error says why not.
func DockerAvailable(ctx context.Context) error { return dockerProbe(ctx) }

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

// StartDocker starts PostgreSQL in a container of image (DefaultImage when
// empty) with database, user and password "jobs". Close terminates it.
func StartDocker(ctx context.Context, image string) (*Server, error) {
	return startDocker(ctx, image, nil)
}

func startDocker(ctx context.Context, image string, logf func(string, ...any)) (*Server, error) {
	if image == "" {
		image = DefaultImage
	}
	if err := dockerProbe(ctx); err != nil {
		return nil, err
	}
	if logf != nil {
		logf("pgserver: starting container from %s", image)
	}
	ctr, err := postgres.Run(ctx, image,
		postgres.WithDatabase("jobs"),
		postgres.WithUsername("jobs"),
		postgres.WithPassword("jobs"),
		testcontainers.WithLabels(map[string]string{ContainerLabel: "true"}),
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
			return fmt.Errorf("pgserver: terminate container: %w", err)
		}
		return nil
	}
	if err != nil {
		_ = terminate()
		if strings.Contains(err.Error(), "reaper") {
			return nil, fmt.Errorf("start container from %s: %w (the Ryuk reaper could not start: set TESTCONTAINERS_RYUK_DISABLED=true; containers carry label %s=true for cleanup)", image, err, ContainerLabel)
		}
		if strings.Contains(err.Error(), "external check") {
			return nil, fmt.Errorf("start container from %s: %w (the published port is not reachable at the host testcontainers chose: set TESTCONTAINERS_HOST_OVERRIDE, e.g. to 127.0.0.1)", image, err)
		}
		return nil, fmt.Errorf("start container from %s: %w", image, err)
	}
	u, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = terminate()
		return nil, fmt.Errorf("container connection string: %w", err)
	}
	return &Server{source: SourceDocker, url: u, closeFn: terminate, container: ctr}, nil
}
