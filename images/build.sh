#!/usr/bin/env bash
# `make images`: every image the integration suite needs, each built only when
# the local daemon does not have it yet. No registry is used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS
"$here/debian-base.sh"
"$here/golang.sh"
"$here/mariadb.sh"
printf '[images] ready in %ss\n' "$((SECONDS - start))" >&2
