# Shared helpers for the image scripts in this directory; sourced, not run.
# shellcheck shell=bash

# The Debian release every image here is built from. The Go build image's tag
# (golang:<go>-bookworm) says the same, so keep them in step.
DEBIAN_SUITE=bookworm
BASE_IMAGE=onebox-test/debian:${DEBIAN_SUITE}
MARIADB_IMAGE=onebox-test/mariadb:10.11

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# have_image NAME succeeds when the local daemon already holds NAME: every
# script builds only what is missing, so a second `make images` costs seconds.
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# apt_entries prints "URI SUITE" for every enabled deb entry in this machine's
# apt sources, both the one-line format (sources.list, *.list) and deb822
# (*.sources). The mirror is read here, at run time, so no host name is ever
# written into the repository and each machine uses the mirror it already has.
apt_entries() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '
			$1 != "deb" { next }
			{
				i = 2
				# skip "[ options ]", which may contain spaces
				if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
				print $i, $(i + 1)
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '
			function flush(   u, s, nu, ns, a, b, i, j) {
				if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/) {
					nu = split(uris, a, " "); ns = split(suites, b, " ")
					for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print a[i], b[j]
				}
				types = ""; uris = ""; suites = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { flush() }' "$f"
	done
}

# mirror_for SUITE prints the first URI that serves SUITE, or nothing.
mirror_for() { apt_entries | awk -v s="$1" '$2 == s { print $1; exit }'; }
