#!/usr/bin/env bash
# Installs qtune under $DESTDIR (default: the root file system) with
# prefix /usr/local: the same files as the Debian package (the list is
# packaging/stage.sh), by hand. A config already in place is never
# overwritten, the policy directory starts empty (the example policies
# are under /usr/local/share/doc/qtune/examples), and the service is
# never enabled or started; the commands to do so are printed at the end.
# On Debian and Ubuntu, prefer the package (make deb; docs/install.md).
#
#   sudo systemd/install.sh
#   DESTDIR=/tmp/stage systemd/install.sh     # staged
#
# $GO picks the go command (default: go).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${DESTDIR:-}"
if [[ -n "$dest" ]]; then
	# The build runs from the repository root, so a relative DESTDIR is
	# resolved against the caller's directory first.
	mkdir -p "$dest"
	dest="$(cd "$dest" && pwd)"
fi
cd "$repo"

go="${GO:-go}"
if ! command -v "$go" >/dev/null; then
	# sudo's secure_path usually lacks Go: sudo GO="$(command -v go)" ...
	echo "install.sh: $go not found; set GO to the go command" >&2
	exit 1
fi

# The binary as the package has it (version stamped in, -trimpath).
make -s build GO="$go"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
packaging/stage.sh bin/qtune "$stage" /usr/local

install -d -m 0755 "$dest/usr/local" "$dest/etc/systemd/system" "$dest/etc/qtune/policy.d"
cp -R "$stage/usr/local/." "$dest/usr/local/"
install -m 0644 "$stage/etc/systemd/system/qtune.service" "$dest/etc/systemd/system/qtune.service"
echo "installed $dest/usr/local/bin/qtune, its man pages, completion and docs, and $dest/etc/systemd/system/qtune.service"
install -d -m 0750 "$dest/var/lib/qtune"

# A fresh install changes nothing on the host until an SRE says so: the
# installed config starts in dry-run (decide, record and report, never
# act). `qtune status` says DRY RUN until dry_run is set to false.
if [[ ! -e "$dest/etc/qtune/agent.hcl" ]]; then
	install -m 0644 "$stage/etc/qtune/agent.hcl" "$dest/etc/qtune/agent.hcl"
	echo "installed $dest/etc/qtune/agent.hcl (dry_run = true: nothing is changed until you set it false)"
else
	echo "kept $dest/etc/qtune/agent.hcl as it is"
fi
if [[ ! -e "$dest/etc/qtune/policy.d/README" ]]; then
	install -m 0644 "$stage/etc/qtune/policy.d/README" "$dest/etc/qtune/policy.d/README"
fi

# Mirrors write only into mirror_dirs; the unit's file system is
# read-only elsewhere, so the drop-in follows the installed config.
dropin="$dest/etc/systemd/system/qtune.service.d/mirror-dirs.conf"
install -d -m 0755 "$(dirname "$dropin")"
"$dest/usr/local/bin/qtune" agent --config "$dest/etc/qtune/agent.hcl" --systemd-dropin >"$dropin"
echo "wrote $dropin (run again after changing mirror_dirs)"

# Whatever policies are in place, say early if the agent would reject
# them at start.
if ! "$dest/usr/local/bin/qtune" policy check "$dest/etc/qtune/policy.d" >/dev/null; then
	echo "warning: the policies in $dest/etc/qtune/policy.d do not check; fix them before starting qtune" >&2
fi

cat <<'EOF2'

qtune is installed but not running. To start it now and at every boot:
  systemctl daemon-reload
  systemctl enable --now qtune
A new install runs in dry-run with no policy: it changes no VM. Copy
policies from /usr/local/share/doc/qtune/examples/policy.d into
/etc/qtune/policy.d (qtune plan shows what they would change), then set
dry_run = false in /etc/qtune/agent.hcl and `systemctl restart qtune`.
EOF2
