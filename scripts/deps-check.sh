#!/usr/bin/env bash
# Dependency rules, checked with `go list -deps` (what a package links, not
# what its tests link). Each rule names a package and a regular expression
# that no third-party package in its dependencies may match.
#
#   scripts/deps-check.sh            the rules that hold; fails on a violation (CI)
#   scripts/deps-check.sh --pending  the rules that wait for a change still in
#                                    progress; fails while they do not hold
#
# When a pending rule holds, move its line from PENDING to RULES.
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
MODULE="$($GO list -m)"

echo_re='^github\.com/labstack/echo(/|$)'
kin_re='^github\.com/getkin/kin-openapi(/|$)'
# Test tooling in the jobsd binary: testcontainers and the Docker client it
# pulls in (docker, moby, containerd), and the standard `testing` package.
test_tooling_re='testcontainers|docker|moby|containerd|^testing$'

# package|forbidden regexp|why
RULES=(
	"./worker|$echo_re|the worker runs jobs and talks to the store; HTTP routing belongs to impl/"
	# store/ links net/http through tracing/ (the OTLP exporters and gRPC are
	# HTTP clients), so "no HTTP" cannot be said with go list; what it must
	# not link is the HTTP server side: echo and the contract's validator.
	"./store|$echo_re|$kin_re|the store sits below the HTTP layer"
)

# package|forbidden regexp|why|the change it waits for
PENDING=(
	"./jobtype|$echo_re|job types do work, not HTTP|splitting gen/ into models, server and client (jobtype/ imports gen/, which holds the echo server)"
	"./client|$echo_re|$kin_re|a client links no server|splitting gen/ into models, server and client"
	"./cmd/jobsd|$test_tooling_re|the jobsd binary links no test tooling|'jobsd dev' running the docker command line instead of linking testcontainers"
)

# violations PKG RE prints the third-party packages PKG links that match RE.
# A failing `go list` fails the script rather than passing the rule.
violations() {
	local deps
	deps="$($GO list -deps "$1")" || return 1
	grep -v "^$MODULE/" <<<"$deps" | grep -E "$2" || true
}

# check RULE... checks each "pkg|re|why[|pending]" rule; returns 1 if any fails.
check() {
	local failed=0 rule pkg re why rest bad
	for rule in "$@"; do
		# The regexp may hold "|", so split the package off the front and
		# the reason (and, for pending rules, the change) off the back.
		pkg="${rule%%|*}"
		rest="${rule#*|}"
		if [ "$mode" = pending ]; then
			rest="${rest%|*}"
		fi
		why="${rest##*|}"
		re="${rest%|*}"
		bad="$(violations "$pkg" "$re")" || { echo "deps-check: cannot list the dependencies of $pkg"; return 1; }
		if [ -n "$bad" ]; then
			echo "deps-check: $pkg links $(wc -l <<<"$bad") forbidden package(s) ($why):"
			sed 's/^/  /' <<<"$bad" | head -20
			failed=1
		elif [ "$mode" = pending ]; then
			echo "deps-check: $pkg now holds ($why): move its rule from PENDING to RULES"
		else
			echo "deps-check: ok: $pkg ($why)"
		fi
	done
	return "$failed"
}

mode=enforced
if [ "${1:-}" = --pending ]; then
	mode=pending
	for rule in "${PENDING[@]}"; do
		echo "deps-check: pending until ${rule##*|}"
	done
	check "${PENDING[@]}"
else
	check "${RULES[@]}"
fi
