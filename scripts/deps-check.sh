#!/usr/bin/env bash
# Dependency rules, checked with `go list -deps`: what a package links (its
# tests aside). Each rule names a package and a regular expression that no
# package in its dependencies may match. Fails on any violation.
#
# client/ and cmd/jobsd/ also hold their rules in Go tests (deps_test.go,
# run by `make test`; the jobsd one also reads the built binary with
# `go version -m`). This script checks every rule in seconds, before the
# test suite, including the packages that have no such test.
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"

echo_re='^github\.com/labstack/echo(/|$)'
kin_re='^github\.com/getkin/kin-openapi(/|$)'
# This module's HTTP server: the generated echo server and its handlers.
server_re='^github\.com/jobsd/jobsd/(gen/server|impl)$'
# The generated contract types: the HTTP edge's and the job inputs', not the
# domain's, the store's or the worker's.
gen_re='^github\.com/jobsd/jobsd/gen(/|$)'
# Test tooling: testcontainers and the Docker client it pulls in, the test
# database harness, and the standard `testing` package.
test_tooling_re='^github\.com/(testcontainers|docker|moby|containerd)/|/dockercfg$|^github\.com/jobsd/jobsd/internal/pgtest$|^testing$'

# package|forbidden regexp|why ("|" inside the regexp is alternation)
RULES=(
	"./job|$echo_re|$kin_re|$server_re|$gen_re|the domain package sits below everything"
	"./worker|$echo_re|$server_re|$gen_re|the worker runs jobs; HTTP and the contract's types belong to impl/ and jobtype/"
	"./dispatch|$echo_re|$server_re|$gen_re|the Lambda worker and the SQS dispatch run jobs, not HTTP"
	"./jobtype|$echo_re|$server_re|job types do work, not HTTP"
	"./client|$echo_re|$kin_re|$server_re|a client links no server"
	# store/ links net/http through tracing/ (the OTLP exporters and gRPC are
	# HTTP clients), so "no HTTP" cannot be said with go list; what it must
	# not link is the HTTP server side.
	"./store|$echo_re|$kin_re|$server_re|$gen_re|the store sits below the HTTP layer and the contract's types"
	# webhook/ is shared by the server, the Go client and receivers: nothing
	# of jobsd's but itself (the only package whose name starts with "we").
	"./webhook|^github\.com/jobsd/jobsd/([^w]|w[^e])|webhook/ imports nothing of jobsd's"
	"./delivery|$echo_re|$kin_re|$server_re|$gen_re|the delivery loop sends webhooks; the job's JSON comes from impl/ as a function"
	"./cmd/jobsd|$test_tooling_re|the jobsd binary links no test tooling ('jobsd dev' runs the docker command line)"
)

# violations PKG RE prints the packages PKG links that match RE. A failing
# `go list` fails the script rather than passing the rule.
violations() {
	local deps
	deps="$($GO list -deps "$1")" || return 1
	grep -E "$2" <<<"$deps" || true
}

failed=0
for rule in "${RULES[@]}"; do
	pkg="${rule%%|*}"
	rest="${rule#*|}"
	why="${rest##*|}"
	re="${rest%|*}"
	bad="$(violations "$pkg" "$re")" || { echo "deps-check: cannot list the dependencies of $pkg"; exit 1; }
	if [ -n "$bad" ]; then
		echo "deps-check: $pkg links $(wc -l <<<"$bad") forbidden package(s) ($why):"
		sed 's/^/  /' <<<"$bad" | head -20
		failed=1
	else
		echo "deps-check: ok: $pkg ($why)"
	fi
done
exit "$failed"
