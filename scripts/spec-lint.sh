#!/usr/bin/env bash
# Lints openapi.yaml with Spectral's OpenAPI ruleset (.spectral.yaml) and fails
# on any error. Spectral comes from the npm registry, installed once into a
# cache folder outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
version=6.16.3
dir="${XDG_CACHE_HOME:-$HOME/.cache}/jobsd/spectral-$version"
bin="$dir/node_modules/.bin/spectral"
if [ ! -x "$bin" ]; then
	mkdir -p "$dir"
	npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@stoplight/spectral-cli@$version" >/dev/null
fi
"$bin" lint --ruleset .spectral.yaml --fail-severity error openapi.yaml
