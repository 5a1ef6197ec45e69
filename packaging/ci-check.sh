#!/usr/bin/env bash
# Installs the Debian package on this machine the way an SRE would, and
# checks each step: lintian, dpkg -i, the files, qtune version,
# systemd-analyze verify on the installed unit, an upgrade from an older
# build that keeps the state store and a changed conffile, remove (state
# and config kept), purge (both gone). Works without systemd as PID 1
# (a container, CI): the maintainer scripts then enable the unit for the
# next boot and start nothing.
#
# Needs root, and a machine without qtune installed; it leaves the
# machine as it found it (checked at the end), also when a step fails.
# Run by `make test` through `make deb-check`; needs lintian and
# systemd-analyze (Debian's systemd package), which .ci/run installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS

fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
step() { echo "deb-check: $*"; }

if [[ "$(id -u)" != 0 ]]; then
	# CI runs as root and must run this; a developer's make test may not.
	[[ "${CI:-}" != true ]] || fail "needs root (dpkg -i)"
	echo "deb-check: SKIPPED: installing the package needs root (sudo make deb-check)" >&2
	exit 0
fi
for tool in dpkg lintian systemd-analyze deb-systemd-helper man; do
	command -v "$tool" >/dev/null || fail "$tool not found (apt-get install lintian systemd man-db)"
done
if dpkg-query -W -f='${Status}' qtune 2>/dev/null | grep -q 'installed\|config-files'; then
	fail "a qtune package is already on this machine; this check installs and purges its own"
fi
for p in /etc/qtune /var/lib/qtune /etc/systemd/system/qtune.service.d; do
	[[ ! -e "$p" ]] || fail "$p exists: this check would remove it on purge"
done

# What the package may touch, before: compared after the purge.
watched=(/etc /var/lib/systemd /lib/systemd/system /usr/bin /usr/share/man/man1 /usr/share/man/man5
	/usr/share/bash-completion/completions /usr/share/zsh /usr/share/doc /usr/share/lintian/overrides /var/lib/qtune)
snapshot() { { find "${watched[@]}" 2>/dev/null || true; } | LC_ALL=C sort; }
before="$(mktemp)" after="$(mktemp)" work="$(mktemp -d)"
snapshot >"$before"
cleanup() {
	local rc=$?
	if dpkg-query -W qtune >/dev/null 2>&1; then
		dpkg --purge qtune >/dev/null 2>&1 || true
	fi
	rm -rf "$work" "$before" "$after" build/deb
	rm -f dist/qtune_*~ci.previous-1_amd64.deb
	exit "$rc"
}
trap cleanup EXIT

# Two builds of this commit (identical), and an older version of the
# same tree to upgrade from ("~" sorts before anything in Debian). The
# builds are this script's own: not part of a parallel make's jobs.
unset MAKEFLAGS MFLAGS MAKELEVEL
version="$(packaging/version.sh)"
old="${version}~ci.previous"
step "building $version twice and $old"
make -s deb >/dev/null
new_deb="dist/qtune_${version}-1_amd64.deb"
cp "$new_deb" "$work/first.deb"
rm -rf build/deb
make -s deb >/dev/null
cmp -s "$work/first.deb" "$new_deb" || fail "two builds of one commit differ: $work/first.deb, $new_deb"
make -s deb VERSION="$old" >/dev/null
old_deb="dist/qtune_${old}-1_amd64.deb"
make -s build >/dev/null # bin/qtune back to this version

step "lintian"
lintian --fail-on error,warning "$new_deb" 2> >(grep -v "running with root privileges" >&2) ||
	fail "lintian: fix the package or add an explained override to packaging/lintian-overrides"

step "install $old"
dpkg -i "$old_deb" </dev/null >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i $old_deb"; }
for f in /usr/bin/qtune /lib/systemd/system/qtune.service /etc/qtune/agent.hcl /etc/qtune/policy.d/README \
	/usr/share/man/man1/qtune.1.gz /usr/share/man/man5/qtune-agent.hcl.5.gz /usr/share/man/man5/qtune-policy.5.gz \
	/usr/share/bash-completion/completions/qtune /usr/share/zsh/vendor-completions/_qtune \
	/usr/share/doc/qtune/copyright /usr/share/doc/qtune/examples/policy.d/noisy-neighbour.hcl \
	/etc/systemd/system/qtune.service.d/mirror-dirs.conf; do
	[[ -f "$f" ]] || fail "$f not installed"
done
[[ "$(stat -c '%a %U %G' /var/lib/qtune)" == "750 root root" ]] || fail "/var/lib/qtune is $(stat -c '%a %U %G' /var/lib/qtune)"
[[ -z "$(find /etc/qtune/policy.d -name '*.hcl')" ]] || fail "the policy directory is not empty after a fresh install"
grep -q '^dry_run = true' /etc/qtune/agent.hcl || fail "installed agent.hcl is not in dry-run"
conffiles="$(dpkg-query -W -f='${Conffiles}' qtune)"
for f in /etc/qtune/agent.hcl /etc/qtune/policy.d/README; do
	grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done
# Enabled for the next boot even with no systemd running.
[[ -L /etc/systemd/system/multi-user.target.wants/qtune.service ]] || fail "the unit was not enabled"
qtune version | grep -qF "qtune $old (commit " || fail "qtune version says: $(qtune version)"
man -w qtune >/dev/null && man -w 5 qtune-policy >/dev/null || fail "man pages not found by man"
qtune policy check /etc/qtune/policy.d >/dev/null || fail "the installed policy directory does not check"
systemd-analyze verify /lib/systemd/system/qtune.service || fail "systemd-analyze verify"

step "state store and a changed conffile"
cat >"$work/store.json" <<'JSON'
{"buckets": {"log": [{"key": "AAAAAAAAAAE=", "value": {"msg": "kept across upgrade and remove"}}]}}
JSON
qtune state import --state-dir /var/lib/qtune "$work/store.json" >/dev/null
qtune state export --state-dir /var/lib/qtune | grep -v '"exported"' >"$work/store.before"
sed -i 's/^interval .*/interval     = "15s"   # changed by the admin/' /etc/qtune/agent.hcl

step "upgrade to $version"
dpkg -i "$new_deb" </dev/null >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "upgrade"; }
[[ "$(dpkg-query -W -f='${Version}' qtune)" == "$version-1" ]] || fail "version after upgrade: $(dpkg-query -W -f='${Version}' qtune)"
qtune version | grep -qF "qtune $version (commit " || fail "qtune version after upgrade says: $(qtune version)"
grep -q '^interval     = "15s"   # changed by the admin' /etc/qtune/agent.hcl || fail "the upgrade lost the changed agent.hcl"
qtune state export --state-dir /var/lib/qtune | grep -v '"exported"' >"$work/store.after"
cmp -s "$work/store.before" "$work/store.after" || fail "the upgrade changed the state store"
systemd-analyze verify /lib/systemd/system/qtune.service || fail "systemd-analyze verify after upgrade"

step "remove"
dpkg -r qtune </dev/null >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -r"; }
[[ ! -e /usr/bin/qtune ]] || fail "/usr/bin/qtune left after remove"
[[ "$(dpkg-query -W -f='${Status}' qtune)" == "deinstall ok config-files" ]] || fail "status after remove: $(dpkg-query -W -f='${Status}' qtune)"
grep -q 'changed by the admin' /etc/qtune/agent.hcl || fail "remove lost the config"
[[ -s /var/lib/qtune/state.db ]] || fail "remove deleted the state store"

step "purge"
dpkg -P qtune </dev/null >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -P"; }
for p in /var/lib/qtune /etc/qtune /etc/systemd/system/qtune.service.d /etc/systemd/system/multi-user.target.wants/qtune.service; do
	[[ ! -e "$p" && ! -L "$p" ]] || fail "$p left after purge"
done
! dpkg-query -W qtune >/dev/null 2>&1 || fail "dpkg still knows qtune after purge"

snapshot >"$after"
diff -u "$before" "$after" || fail "the machine differs from before the install (above)"
step "ok in $((SECONDS - start)) s"
