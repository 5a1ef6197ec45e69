#!/usr/bin/env bash
# Lays out every file qtune installs under ROOT, for PREFIX /usr (the
# Debian package) or /usr/local (make install): the one list of files
# both use.
#
#   packaging/stage.sh BINARY ROOT PREFIX
#
# BINARY is the built qtune (the Makefile builds it with the version
# stamped in); it also writes the man pages and completion scripts, so
# they always match the binary they describe. With SOURCE_DATE_EPOCH set
# every file gets that time, for reproducible packages.
set -euo pipefail

bin="$1" root="$2" prefix="$3"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

case "$prefix" in
/usr)
	unitdir=/lib/systemd/system
	zshdir=$prefix/share/zsh/vendor-completions
	;;
*)
	unitdir=/etc/systemd/system
	zshdir=$prefix/share/zsh/site-functions
	;;
esac
doc="$prefix/share/doc/qtune"

rm -rf "$root"
install -d -m 0755 "$root$prefix/bin" "$root$unitdir" "$root/etc/qtune/policy.d" \
	"$root$prefix/share/man/man1" "$root$prefix/share/man/man5" \
	"$root$prefix/share/bash-completion/completions" "$root$zshdir" \
	"$root$doc/examples"

install -m 0755 "$bin" "$root$prefix/bin/qtune"

# The unit names the binary and its documentation by their installed paths.
sed -e "s#/usr/local/bin/qtune#$prefix/bin/qtune#g" -e "s#/usr/local/share/doc/qtune#$doc#g" \
	systemd/qtune.service >"$root$unitdir/qtune.service"
chmod 0644 "$root$unitdir/qtune.service"

# A fresh install changes nothing on the host until an SRE says so: the
# installed config starts in dry-run (decide, record and report, never
# act), and the policy directory it reads starts empty.
packaging/installed-config.sh <examples/agent.hcl >"$root/etc/qtune/agent.hcl"
chmod 0644 "$root/etc/qtune/agent.hcl"
sed "s#@DOC@#$doc#g" packaging/policy.d-README >"$root/etc/qtune/policy.d/README"
chmod 0644 "$root/etc/qtune/policy.d/README"

man="$(mktemp -d)"
trap 'rm -rf "$man"' EXIT
"$bin" __man --config-example examples/agent.hcl "$man"
for page in qtune.1 qtune-agent.hcl.5 qtune-policy.5; do
	gzip -9n <"$man/$page" >"$root$prefix/share/man/man${page##*.}/$page.gz"
done
"$bin" __completion bash >"$root$prefix/share/bash-completion/completions/qtune"
"$bin" __completion zsh >"$root$zshdir/_qtune"

install -m 0644 README.md "$root$doc/README.md"
install -m 0644 docs/*.md "$root$doc/"
cp -R examples/policy.d examples/tests examples/prometheus examples/grafana "$root$doc/examples/"
install -m 0644 examples/agent.hcl "$root$doc/examples/agent.hcl"

# Debian's own documents: copyright in its machine-readable format, a
# changelog entry for this build, and the lintian overrides (each
# explained in the file).
if [[ "$prefix" == /usr ]]; then
	: "${VERSION:?VERSION must be set for the package}" "${DEB_MAINTAINER:?DEB_MAINTAINER must be set}"
	{
		echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
		echo "Upstream-Name: qtune"
		echo "Source: https://github.com/qtune/qtune"
		echo
		echo "Files: *"
		echo "Copyright: 2026 The qtune Authors"
		echo "License: Apache-2.0"
		echo " On Debian systems, the full text of the Apache License, Version 2.0"
		echo " is in /usr/share/common-licenses/Apache-2.0."
	} >"$root$doc/copyright"
	{
		echo "qtune ($VERSION-1) unstable; urgency=medium"
		echo
		echo "  * Built from commit ${COMMIT:-unknown}."
		echo
		echo " -- $DEB_MAINTAINER  $(LC_ALL=C date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
	} | gzip -9n >"$root$doc/changelog.Debian.gz"
	install -d -m 0755 "$root/usr/share/lintian/overrides"
	install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/qtune"
fi

find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f ! -path "*/bin/qtune" -exec chmod 0644 {} +
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
