#!/usr/bin/env bash
# `make up`: the guestbook stack (compose.yaml: onebox + MySQL) up and healthy
# on http://localhost:8080, with whichever compose tool this machine has
# (`docker compose` v2 or docker-compose 1.29), with or without a registry:
#
#   registry: the database image is pulled, and compose builds ./Dockerfile as
#             `docker compose up --build` would (the build stage downloads the
#             Go modules);
#   offline:  the images the build needs are made locally (`make images`:
#             debootstrap, this machine's Go and Debian's MariaDB in place of
#             mysql:8.4, unless MYSQL_IMAGE names an image this machine has),
#             and compose builds from an offline context with vendored modules
#             (images/context.sh).
#
# One line says which way it went. The project is COMPOSE_PROJECT_NAME or the
# checkout's directory name, as for compose itself; `make down` stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verb=up
. "$here/compose.sh"
start=$SECONDS

db_image=$(compose_db_image "$repo/compose.yaml") || die "${compose[*]} config: compose.yaml does not resolve"
if docker pull -q "$db_image" >/dev/null 2>&1; then
	log "registry: pulled $db_image, building ./Dockerfile with ${compose[*]}"
	file=$repo/compose.yaml
else
	local_db=
	default=$(sed -n 's/.*${MYSQL_IMAGE:-\([^}]*\)}.*/\1/p' "$repo/compose.yaml" | head -n1)
	if docker image inspect "$db_image" >/dev/null 2>&1; then
		way="offline (no pull of $db_image): $db_image as this machine has it, local Go build image, offline build context, ${compose[*]}"
	elif [ "$db_image" != "$default" ]; then
		die "MYSQL_IMAGE=$db_image: it cannot be pulled and this machine has no such image (unset it for a local MariaDB)"
	else
		export MYSQL_IMAGE=$MARIADB_IMAGE
		local_db=yes
		way="offline (no pull of $db_image): local images ($MARIADB_IMAGE for $default), offline build context, ${compose[*]}"
	fi
	log "$way"
	if [ -n "$local_db" ]; then "$here/mariadb.sh"; fi
	"$here/golang.sh"
	"$here/context.sh" "$repo/build/context"
	file=$repo/build/context/compose.yaml
fi

"${compose[@]}" -p "$project" -f "$file" up -d --build >&2
id=$("${compose[@]}" -p "$project" -f "$file" ps -q onebox)
[ -n "$id" ] || die "compose started no onebox container"
# The image's HEALTHCHECK (onebox health) is ready only once the database
# gate, the migration and the worker pool are; the gate waits up to 60s.
while :; do
	state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
	case "$state" in
	"running healthy") break ;;
	running*) sleep 1 ;;
	*)
		docker logs --tail 40 "$id" >&2 || true
		die "onebox is $state; its last log lines are above"
		;;
	esac
	if [ $((SECONDS - start)) -gt 900 ]; then
		die "onebox is not healthy after 15 minutes (${compose[*]} -p $project logs onebox)"
	fi
done
port=$(docker port "$id" 8080/tcp | head -n1)
log "the guestbook is up on http://localhost:${port##*:} (project $project, ready in $((SECONDS - start))s); make down stops it"
