#!/usr/bin/env bash
# `make down`: stops and removes what `make up` started (containers and the
# network; the database volume stays, as with compose's own `down`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verb=down
. "$here/compose.sh"
"${compose[@]}" -p "$project" -f "$repo/compose.yaml" down "$@" >&2
log "project $project is down (its database volume stays: add --volumes to compose's down to remove it)"
