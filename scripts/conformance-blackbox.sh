#!/usr/bin/env bash
# Runs the conformance suite in black-box mode against a real `jobsd dev`
# process (API, worker and local issuer), as it would run against any
# deployment: only HTTP, tokens from a command, job-creating checks allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${CONFORMANCE_PORT:-18080}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/jobsd" ./cmd/jobsd
JOBS_DEV_KEY="$work/dev-key.pem" "$work/jobsd" dev --addr "127.0.0.1:$port" >"$work/dev.out" 2>"$work/dev.log" &
pid=$!
for _ in $(seq 1 60); do
	grep -q "ready on" "$work/dev.out" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/dev.log"; exit 1; }
	sleep 0.5
done
grep -q "ready on" "$work/dev.out" || { echo "jobsd dev did not become ready"; cat "$work/dev.log"; exit 1; }

CONFORMANCE_BASE_URL="http://127.0.0.1:$port" \
CONFORMANCE_TOKEN_CMD="JOBS_DEV_KEY=$work/dev-key.pem $work/jobsd token --addr 127.0.0.1:$port --sub conformance-blackbox --admin" \
CONFORMANCE_ALLOW_CREATE=1 \
CONFORMANCE_PROVIDER=local \
	go test -count=1 -v ./conformance/ | grep -E '^(--- |ok|FAIL|PASS)'
