#!/usr/bin/env bash
# govulncheck against an offline vulnerability database, built from the
# golang.org/x/vulndb module (served by the Go module proxy, reached through
# the machine's GOPROXY) and cached, for machines that cannot reach the public
# database. Fails when the code reaches a vulnerability that has a fixed
# version, and fails too when the check cannot run: a check that passes
# without running would hide exactly the day it is needed.
set -uo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
VULN_VERSION=v1.9.0
cache="${JOBS_VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobsd/vulndb-$VULNDB_VERSION}"
# Downloads are tried ATTEMPTS times, waiting 5 s, 10 s, 20 s... between
# tries: a module proxy that drops a request now and then should not fail
# CI, one that stays away for a minute should.
attempts="${JOBS_VULNCHECK_ATTEMPTS:-4}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
	echo "vulncheck: FAILED (the check did not run): $*" >&2
	exit 1
}

# retry runs "$@" until it succeeds, at most $attempts times with a doubling
# wait; the last try's output stays in $work/out for fail to show.
retry() {
	local try=1 wait=5
	while :; do
		"$@" >"$work/out" 2>&1 && return 0
		if [ "$try" -ge "$attempts" ]; then
			echo "vulncheck: gave up after $try attempts; last error:" >&2
			tail -n 20 "$work/out" >&2
			return 1
		fi
		echo "vulncheck: attempt $try of $attempts failed ($(tail -n 1 "$work/out")); retrying in ${wait}s" >&2
		sleep "$wait"
		try=$((try + 1))
		wait=$((wait * 2))
	done
}

# The two tools are installed (not `go run`) so that their download is
# retried here and running them needs no network.
export GOBIN="$work/bin"
retry go install "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION" ||
	fail "could not download govulncheck (golang.org/x/vuln@$VULN_VERSION) through the Go module proxy (GOPROXY)"

if [ ! -f "$cache/index/db.json" ]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (once per machine)"
	# Outside this module, so that the download cannot touch go.mod or go.sum.
	retry go mod download -C "$work" -json "golang.org/x/vulndb@$VULNDB_VERSION" ||
		fail "could not download golang.org/x/vulndb@$VULNDB_VERSION through the Go module proxy (GOPROXY)"
	src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/out")"
	[ -d "$src/data/osv" ] || fail "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv folder (at '$src')"
	retry go install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" ||
		fail "could not download the database indexer (golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION)"
	"$GOBIN/indexdb" -vulns "$src/data/osv" -out "$work/db" >"$work/out" 2>&1 ||
		{ tail -n 20 "$work/out" >&2; fail "indexing the vulnerability database failed"; }
	mkdir -p "$(dirname "$cache")" && rm -rf "$cache" && mv "$work/db" "$cache" ||
		fail "could not store the database in $cache"
fi

# govulncheck -format json exits 0 with findings in the stream; anything
# else is a failure to run.
"$GOBIN/govulncheck" -db "file://$cache" -format json ./... >"$work/report" 2>"$work/out"
status=$?
[ $status -eq 0 ] || { tail -n 20 "$work/out" >&2; fail "govulncheck exited $status"; }
echo "vulncheck: database golang.org/x/vulndb@$VULNDB_VERSION"
go run ./internal/vulngate <"$work/report"
