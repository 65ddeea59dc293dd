#!/usr/bin/env bash
# Builds onebox-test/mariadb:10.11 (Debian's mariadb-server on the Debian base,
# with an entrypoint that honours the official image's MYSQL_* variables) when
# the daemon does not already have it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if have_image "$MARIADB_IMAGE"; then
	log "$MARIADB_IMAGE present"
	exit 0
fi
"$here/debian-base.sh"
log "building $MARIADB_IMAGE from $BASE_IMAGE"
start=$SECONDS
docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$MARIADB_IMAGE" "$here/mariadb" >/dev/null
version=$(docker run --rm --entrypoint mariadbd "$MARIADB_IMAGE" --version)
case "$version" in
*10.11.*) ;;
*)
	docker rmi "$MARIADB_IMAGE" >/dev/null
	die "Debian $DEBIAN_SUITE's mariadb-server is not 10.11: $version"
	;;
esac
log "built $MARIADB_IMAGE ($version) in $((SECONDS - start))s"
