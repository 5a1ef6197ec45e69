#!/usr/bin/env bash
# Builds the test lab's second flavour: QEMU 10.0 and libvirt 11.3 from
# Debian 12's backports suite, in a root of their own under the lab cache
# (QTUNE_LAB_CACHE, else $XDG_CACHE_HOME/qtune-lab, else ~/.cache/qtune-lab):
#
#   <cache>/flavour-10/root   the tree (QTUNE_LAB_FLAVOUR=10 uses it)
#   <cache>/flavour-10/debs   downloaded .debs, reused by the next build
#
# The system's apt state and packages are never touched: mmdebstrap runs
# apt with a state of its own inside the new tree, so the system's QEMU 7.2
# and libvirt 9.0 stay installed and the default. A tree whose recipe is
# unchanged is kept (the run then takes well under a second); a changed
# recipe, or FORCE=1, builds a new one beside it and swaps it in.
# Needs root (chroot, mounts) and mmdebstrap.
set -euo pipefail

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
# libvirt 11 ships its secret driver (the keys of LUKS disks) apart.
PACKAGES="qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-secret libvirt-daemon-log libvirt-clients"

cache=${QTUNE_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qtune-lab}
dir=$cache/flavour-10
root=$dir/root

if [ "$(id -u)" != 0 ]; then
	echo "flavour-10: needs root (mmdebstrap's root mode, chroot)" >&2
	exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
	echo "flavour-10: mmdebstrap not found (apt-get install --no-install-recommends mmdebstrap)" >&2
	exit 1
fi

# The recipe's fingerprint: this script and the mirror. Same fingerprint,
# same tree.
recipe=$( (cat "$0"; echo "$MIRROR $SECURITY") | sha256sum | cut -c1-16)

versions() {
	chroot "$1" dpkg-query -W -f '${Package} ${Version}\n' \
		qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
}

# Wrappers in $dir/bin run the tree's programs on the host through the
# tree's own dynamic loader and libraries, so sockets, images and temporary
# directories keep their host paths. QEMU is given the tree's firmware, and
# its modules through QEMU_MODULE_DIR. The test lab puts $dir/bin first on
# PATH when QTUNE_LAB_FLAVOUR=10; libvirtd runs chrooted in the tree instead
# (it has compiled-in paths for its drivers and state).
wrappers() {
	mkdir -p "$dir/bin"
	local libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
	local tool extra
	for tool in qemu-system-x86_64 qemu-img qemu-io qemu-nbd virsh; do
		extra=""
		if [ "$tool" = qemu-system-x86_64 ]; then
			extra="-L '$root/usr/share/qemu' -L '$root/usr/share/seabios'"
		fi
		printf '#!/bin/sh\nQEMU_MODULE_DIR=%s exec %s --library-path %s %s %s "$@"\n' \
			"'$root/usr/lib/x86_64-linux-gnu/qemu'" "'$root/lib64/ld-linux-x86-64.so.2'" "'$libs'" \
			"'$root/usr/bin/$tool'" "$extra" >"$dir/bin/$tool.new"
		chmod 755 "$dir/bin/$tool.new"
		mv "$dir/bin/$tool.new" "$dir/bin/$tool"
	done
}

if [ "${FORCE:-}" != 1 ] && [ -f "$root/.qtune-flavour" ] && [ "$(cat "$root/.qtune-flavour")" = "$recipe" ]; then
	echo "flavour-10: $root is up to date"
	wrappers
	versions "$root"
	exit 0
fi

mkdir -p "$dir/debs"
exec 9>"$dir/.lock"
flock 9

new=$dir/root.new
rm -rf "$new"
start=$(date +%s)

# Backports are pinned at the default priority so that the newest version
# wins for the packages backports has, and bookworm's for all the others.
# Documentation, manuals and translations are left out: nothing runs them.
# The .deb cache goes in from $dir/debs and comes back out after the build,
# so a rebuild downloads only what changed.
mmdebstrap --variant=essential --mode=root --format=directory \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--setup-hook='mkdir -p "$1/etc/apt/preferences.d" && printf "Package: *\nPin: release n=bookworm-backports\nPin-Priority: 500\n" >"$1/etc/apt/preferences.d/backports"' \
	--skip=download/empty --skip=essential/unlink \
	--setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
	--setup-hook="sync-in '$dir/debs' /var/cache/apt/archives/" \
	--customize-hook="sync-out /var/cache/apt/archives '$dir/debs'" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages*' \
	--include="$(echo "$PACKAGES" | tr ' ' ,)" \
	bookworm "$new" \
	"deb $MIRROR bookworm main" \
	"deb $MIRROR bookworm-updates main" \
	"deb $SECURITY bookworm-security main" \
	"deb $MIRROR bookworm-backports main"

echo "$recipe" >"$new/.qtune-flavour"
if [ -d "$root" ]; then
	mv "$root" "$dir/root.old"
fi
mv "$new" "$root"
rm -rf "$dir/root.old"

wrappers
echo "flavour-10: built $root in $(($(date +%s) - start)) s, $(du -sh "$root" | cut -f1)"
versions "$root"
