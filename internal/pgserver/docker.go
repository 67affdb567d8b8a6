package pgserver

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// ContainerLabel is set to "true" on every container this package (and
// pgdocker) starts, so leftovers can be removed by label.
const ContainerLabel = "jobsd.test"

// DockerStarter starts PostgreSQL in a container of image (DefaultImage when
// empty) and returns it as a SourceDocker server; logf receives progress
// messages. [StartDockerCLI] is the default; the test suites pass
// pgdocker.Start, which uses testcontainers-go, so that only test binaries
// link a Docker client library.
type DockerStarter func(ctx context.Context, image string, logf func(string, ...any)) (*Server, error)

// dockerCLI is the docker command; a variable so a test can point it at a
// missing program.
var dockerCLI = "docker"

// DockerAvailable reports, within a few seconds, whether the docker command
// can reach an engine; the error says why not.
func DockerAvailable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if _, err := dockerOutput(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("docker not reachable: %w", err)
	}
	return nil
}

// StartDockerCLI starts PostgreSQL in a container through the docker command
// line, with database, user and password "jobs", its port published on a free
// 127.0.0.1 port (a trust-everyone dev database stays off other interfaces).
// Close removes the container. It is the Docker path of `jobsd dev`, which
// thus links no Docker client library.
func StartDockerCLI(ctx context.Context, image string, logf func(string, ...any)) (*Server, error) {
	if image == "" {
		image = DefaultImage
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := DockerAvailable(ctx); err != nil {
		return nil, err
	}
	logf("pgserver: starting container from %s (docker run)", image)
	id, err := dockerOutput(ctx, "run", "-d",
		"--label", ContainerLabel+"=true",
		"-e", "POSTGRES_DB=jobs", "-e", "POSTGRES_USER=jobs", "-e", "POSTGRES_PASSWORD=jobs",
		"-p", "127.0.0.1::5432",
		// Docker's default /dev/shm is 64 MiB, which a parallel query's
		// shared memory outgrows on a table of a million rows; the official
		// image's documentation recommends raising it.
		"--shm-size", "512m",
		image)
	if err != nil {
		return nil, fmt.Errorf("start container from %s: %w", image, err)
	}
	remove := func() error {
		// A fresh context: Close runs after the caller's context has ended.
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := dockerOutput(rctx, "rm", "-f", "-v", id); err != nil {
			return fmt.Errorf("pgserver: remove container %.12s: %w", id, err)
		}
		return nil
	}
	u, err := containerURL(ctx, id)
	if err == nil {
		err = waitContainer(ctx, id, u, 60*time.Second)
	}
	if err != nil {
		_ = remove()
		return nil, fmt.Errorf("container %.12s from %s: %w", id, image, err)
	}
	return NewServer(SourceDocker, u, remove), nil
}

// containerURL reads the host port Docker published for 5432.
func containerURL(ctx context.Context, id string) (string, error) {
	out, err := dockerOutput(ctx, "port", id, "5432/tcp")
	if err != nil {
		return "", err
	}
	// One line per published address; we published only on 127.0.0.1.
	first, _, _ := strings.Cut(out, "\n")
	host, port, err := net.SplitHostPort(strings.TrimSpace(first))
	if err != nil {
		return "", fmt.Errorf("docker port printed %q: %w", out, err)
	}
	return fmt.Sprintf("postgres://jobs:jobs@%s/jobs?sslmode=disable", net.JoinHostPort(host, port)), nil
}

// waitContainer waits until the server in container id answers on u. The
// image's entrypoint initialises the cluster with a temporary server that
// listens on a Unix socket only, so the first TCP connection that succeeds
// reaches the final server.
func waitContainer(ctx context.Context, id, u string, limit time.Duration) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err = db.PingContext(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		if running, _ := dockerOutput(ctx, "inspect", "-f", "{{.State.Running}}", id); running == "false" {
			// The server logs to standard error: take both streams.
			logs, _ := exec.CommandContext(ctx, dockerCLI, "logs", "--tail", "20", id).CombinedOutput()
			return fmt.Errorf("postgres exited during startup; log tail:\n%s", tail(logs, 2000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections within %s: %w (last error: %w)", limit, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dockerOutput runs the docker command and returns its trimmed standard
// output; the error carries its standard error.
func dockerOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, dockerCLI, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, tail(stderr.Bytes(), 1000))
		}
		return "", fmt.Errorf("docker %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}
