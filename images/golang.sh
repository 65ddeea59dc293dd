#!/usr/bin/env bash
# Builds the Go build image that the project's Dockerfile names in its build
# stage (golang:<major.minor>-bookworm) from the Debian base and this machine's
# Go toolchain, when the daemon does not already have it. The tag is read from
# the Dockerfile, and the toolchain must be that Go release, so the name is true.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dockerfile=${1:-$here/../Dockerfile}

tag=$(awk 'toupper($1) == "FROM" && $2 ~ /^golang:/ { print $2; exit }' "$dockerfile")
[ -n "$tag" ] || die "no 'FROM golang:…' build stage in $dockerfile"
if have_image "$tag"; then
	log "$tag present"
	exit 0
fi
"$here/debian-base.sh"

want=${tag#golang:}
want=${want%%-*}                        # 1.26 from golang:1.26-bookworm
suite=${tag##*-}                        # bookworm
[ "$suite" = "$DEBIAN_SUITE" ] || die "$tag is not on Debian $DEBIAN_SUITE"
command -v go >/dev/null || die "go is not on PATH"
have=$(go env GOVERSION)                # go1.26.8
case "${have#go}." in
"$want".*) ;;
*) die "this machine's Go is $have, the Dockerfile wants $tag" ;;
esac
goroot=$(go env GOROOT)

log "building $tag from $BASE_IMAGE + $have"
start=$SECONDS
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/golang/Dockerfile" "$ctx/Dockerfile"
# Stream the context as a tar instead of copying GOROOT: the Dockerfile from
# one place, the toolchain (renamed to go/) from another; tests and
# prebuilt caches of other platforms are left out.
tar -c -C "$ctx" Dockerfile \
	-C "$(dirname "$goroot")" \
	--exclude="$(basename "$goroot")/test" \
	--exclude="$(basename "$goroot")/pkg/*_race" \
	--transform "s,^$(basename "$goroot"),go," \
	"$(basename "$goroot")" |
	docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" \
		--label "org.opencontainers.image.description=Debian $DEBIAN_SUITE + $have (built locally by images/golang.sh)" \
		-t "$tag" - >/dev/null
docker run --rm "$tag" go version >&2
log "built $tag in $((SECONDS - start))s"
