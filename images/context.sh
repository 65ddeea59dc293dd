#!/usr/bin/env bash
# images/context.sh DIR: an offline build context for ./Dockerfile in DIR: the
# repository's files (tracked, and untracked but not ignored, so a .env beside
# compose.yaml comes along) plus vendor/, made with this machine's Go.
#
# Why: where no registry is reachable, build containers often cannot download
# Go modules either (no route out, or a TLS-intercepting proxy whose
# certificate they do not trust). The Dockerfile builds from vendor/ when the
# context has one. `make up` (images/up.sh) and the integration suite both
# build from this context; the work tree itself never gets a vendor/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/.." && pwd)
[ $# -eq 1 ] || die "usage: images/context.sh DIR"
dir=$1
command -v go >/dev/null || die "go is not on PATH: the offline build context vendors the modules with this machine's Go"

rm -rf "$dir"
mkdir -p "$dir"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Regular files only: a tracked file deleted in the work tree is skipped.
	git -C "$repo" ls-files -z --cached --others --exclude-standard |
		(cd "$repo" && while IFS= read -r -d '' f; do
			[ -f "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"
		done) |
		tar -C "$repo" --null -T - -c | tar -C "$dir" -x
else
	# An unpacked archive rather than a clone: everything but build output.
	tar -C "$repo" --exclude=./.git --exclude=./build --exclude=./bin --exclude=./vendor -c . | tar -C "$dir" -x
fi
(cd "$dir" && go mod vendor) || die "go mod vendor in $dir failed"
