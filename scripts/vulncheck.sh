#!/usr/bin/env bash
# govulncheck against an offline vulnerability database, built from the
# golang.org/x/vulndb module (served by the Go module proxy) and cached, for
# machines that cannot reach the public database. Fails when the code reaches
# a vulnerability that has a fixed version; says loudly when it could not run.
set -uo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
VULN_VERSION=v1.9.0
cache="${JOBS_VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobsd/vulndb-$VULNDB_VERSION}"

not_run() { echo "vulncheck: NOT RUN: $*"; exit 0; }

if [ ! -f "$cache/index/db.json" ]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (once per machine)"
	src="$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" 2>/dev/null | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[ -d "$src/data/osv" ] || not_run "golang.org/x/vulndb@$VULNDB_VERSION could not be downloaded"
	tmp="$(mktemp -d)"
	go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$tmp/db" >/dev/null 2>&1 ||
		{ rm -rf "$tmp"; not_run "indexing the vulnerability database failed"; }
	mkdir -p "$(dirname "$cache")" && rm -rf "$cache" && mv "$tmp/db" "$cache" && rm -rf "$tmp"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
go run "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION" -db "file://$cache" -format json ./... >"$report" 2>/dev/null
status=$?
# govulncheck -format json exits 0 with findings in the stream; anything else is a failure to run.
[ $status -eq 0 ] || not_run "govulncheck exited $status"
echo "vulncheck: database golang.org/x/vulndb@$VULNDB_VERSION"
go run ./internal/vulngate <"$report"
