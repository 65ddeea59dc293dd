# Shared by images/up.sh and images/down.sh; sourced, not run.
# shellcheck shell=bash
. "$here/lib.sh"
log() { printf '[make %s] %s\n' "$verb" "$*" >&2; }
repo=$(cd "$here/.." && pwd)

# compose is the compose command this machine has: the v2 plugin first.
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	die "neither \`docker compose\` (v2) nor docker-compose (1.29) is installed"
fi

# project is compose's own default (the directory's name, lower case) unless
# COMPOSE_PROJECT_NAME says otherwise, so `docker compose down` finds it too.
project=${COMPOSE_PROJECT_NAME:-$(basename "$repo" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9_-')}
[ -n "$project" ] || die "cannot make a compose project name from $repo: set COMPOSE_PROJECT_NAME"

# compose_db_image FILE prints the db service's image as compose resolves it
# (.env and the environment included). awk reads to the end: an early exit
# would fail the pipeline (pipefail) when compose is still writing.
compose_db_image() {
	"${compose[@]}" -f "$1" config |
		awk '/^services:/ { s = 1; next }
			s && /^[^ ]/ { s = 0 }
			s && /^  db:/ { d = 1; next }
			d && /^  [^ ]/ { d = 0 }
			d && /^    image:/ && !done { gsub(/["'\'']/, "", $2); print $2; done = 1 }' | grep .
}
