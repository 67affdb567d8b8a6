#!/usr/bin/env bash
# Prepares a machine without internet access for the testcontainers suite:
# a running Docker engine and a PostgreSQL image built from Debian packages.
# Every step is skipped when its result is already there, so running it twice
# costs seconds. The Debian mirror is read from the machine's apt sources.
#
# Usage: scripts/docker-postgres.sh [IMAGE]   (default jobsd-test-postgres:15)
set -euo pipefail

IMAGE="${1:-jobsd-test-postgres:15}"
log() { echo "docker-postgres: $*" >&2; }

apt_updated=""
apt_install() {
	if [ -z "$apt_updated" ]; then
		apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. The engine.
if ! command -v dockerd >/dev/null 2>&1; then
	log "installing docker.io"
	apt_install docker.io
fi
if ! docker info >/dev/null 2>&1; then
	log "starting dockerd"
	nohup dockerd >/tmp/dockerd.log 2>&1 &
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/dockerd.log"; exit 1; }
fi

# 2. The image.
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "image $IMAGE present"
	exit 0
fi
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap

mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
if [ -z "$mirror" ]; then
	mirror="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
[ -n "$mirror" ] || { log "no Debian mirror found in the apt sources"; exit 1; }

rootfs="$(mktemp -d /tmp/jobsd-pg-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap postgresql-15 (a few minutes)"
debootstrap --variant=minbase --include=postgresql-15 bookworm "$rootfs" "$mirror" >/tmp/jobsd-debootstrap.log 2>&1 ||
	{ log "debootstrap failed; see /tmp/jobsd-debootstrap.log"; exit 1; }

rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

install -m 0755 "$(dirname "$0")/docker-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
mkdir -p "$rootfs/var/lib/postgresql/data" "$rootfs/var/run/postgresql"
chroot "$rootfs" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

log "importing $IMAGE"
tar -C "$rootfs" -c . | docker import \
	-c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	-c 'ENV PGDATA=/var/lib/postgresql/data' \
	-c 'USER postgres' \
	-c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
	-c 'CMD ["postgres"]' \
	-c 'EXPOSE 5432' - "$IMAGE" >/dev/null
log "image $IMAGE built"
