#!/bin/bash
# Entrypoint of the offline-built PostgreSQL test image. It honours the
# official image's contract (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB),
# so the testcontainers-go postgres module works unchanged: initdb on first
# start, local trust and host scram-sha-256, a temporary server to create the
# database, then exec the command.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "${1:-}" = "postgres" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
	rm -f "$pwfile"
	{
		echo "host all all all scram-sha-256"
	} >>"$PGDATA/pg_hba.conf"
	echo "listen_addresses='*'" >>"$PGDATA/postgresql.conf"

	# The temporary server logs "ready to accept connections" once; the final
	# server logs it again. Waiting for it twice (as the testcontainers module
	# does) therefore waits for the real server, as with the official image.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	if [ "$POSTGRES_DB" != "postgres" ]; then
		psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
			-c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
