#!/usr/bin/env bash
# The quick loop: `go test -short` with one PostgreSQL server for every test
# package. Each database package otherwise starts a server of its own (a
# container or a cluster), which is most of a short run's time. The server is
# JOBS_TEST_DATABASE_URL when set; else a container started here with the
# docker command (removed at exit); else, without Docker, each package falls
# back to the PostgreSQL binaries as usual. Arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${JOBS_TEST_DATABASE_URL:-}" ] && docker info >/dev/null 2>&1; then
	image="${JOBS_TEST_POSTGRES_IMAGE:-postgres:15}"
	cid="$(docker run -d --rm --label jobsd.test=true --shm-size 512m \
		-e POSTGRES_USER=postgres -e POSTGRES_PASSWORD=postgres -e POSTGRES_DB=postgres \
		-p 127.0.0.1::5432 "$image")"
	trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
	# Ready once the server answers over TCP: the image's first start runs a
	# temporary server that listens on its socket only.
	for _ in $(seq 1 120); do
		docker exec "$cid" pg_isready -q -h 127.0.0.1 -U postgres && break
		sleep 0.5
	done
	docker exec "$cid" pg_isready -q -h 127.0.0.1 -U postgres || { echo "test-short: PostgreSQL did not start"; docker logs "$cid" | tail -20; exit 1; }
	port="$(docker port "$cid" 5432/tcp | head -1 | sed 's/.*://')"
	export JOBS_TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres?sslmode=disable"
fi
go test "$@" ./...
