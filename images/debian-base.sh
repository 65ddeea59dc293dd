#!/usr/bin/env bash
# Builds the Debian base image (onebox-test/debian:bookworm) with debootstrap,
# from this machine's apt mirror, when the daemon does not already have it.
# No registry is involved: the root file system is imported as an image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if have_image "$BASE_IMAGE"; then
	log "$BASE_IMAGE present"
	exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

mirror=$(mirror_for "$DEBIAN_SUITE")
[ -n "$mirror" ] || die "no apt source for suite $DEBIAN_SUITE in this machine's apt sources"
updates=$(mirror_for "$DEBIAN_SUITE-updates")
security=$(mirror_for "$DEBIAN_SUITE-security")

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap $DEBIAN_SUITE (minbase) from this machine's mirror"
start=$SECONDS
# ca-certificates: the Go build image fetches modules over HTTPS and copies the
# bundle into the final scratch image (MySQL TLS).
debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$mirror" >&2

{
	echo "deb $mirror $DEBIAN_SUITE main"
	[ -z "$updates" ] || echo "deb $updates $DEBIAN_SUITE-updates main"
	[ -z "$security" ] || echo "deb $security $DEBIAN_SUITE-security main"
} >"$rootfs/etc/apt/sources.list"
# Keep images small and builds quiet: no recommends, no docs, no apt lists.
cat >"$rootfs/etc/apt/apt.conf.d/90onebox" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CONF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90onebox-nodoc" <<'CONF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CONF
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" --numeric-owner -c . |
	docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		--message "debootstrap --variant=minbase $DEBIAN_SUITE" \
		- "$BASE_IMAGE" >/dev/null
log "built $BASE_IMAGE in $((SECONDS - start))s"
