#!/usr/bin/env bash
# Installs qtune under $DESTDIR (default: the root file system): the
# binary, its systemd unit, /etc/qtune with the example config and
# policies. A config or policy already in place is never overwritten, and
# the service is never enabled or started; the commands to do so are
# printed at the end.
#
#   sudo systemd/install.sh
#   DESTDIR=/tmp/stage systemd/install.sh     # staged, e.g. for packaging
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

install -d -m 0755 "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/etc/qtune/policy.d"
"$go" build -trimpath -o "$dest/usr/local/bin/qtune" ./cmd/qtune
install -m 0644 systemd/qtune.service "$dest/etc/systemd/system/qtune.service"
echo "installed $dest/usr/local/bin/qtune and $dest/etc/systemd/system/qtune.service"

# The unit's Documentation= points here.
install -d -m 0755 "$dest/usr/local/share/doc/qtune"
for doc in README.md docs/metrics.md; do
	if [[ -f "$doc" ]]; then
		install -m 0644 "$doc" "$dest/usr/local/share/doc/qtune/"
	fi
done

# A fresh install changes nothing on the host until an SRE says so: the
# installed config starts in dry-run (decide, record and report, never
# act). `qtune status` says DRY RUN until dry_run is set to false.
if [[ -f examples/agent.hcl && ! -e "$dest/etc/qtune/agent.hcl" ]]; then
	sed 's/^dry_run = false .*$/dry_run = true    # installed in dry-run: set false (then systemctl restart qtune) once `qtune status` shows the decisions you want/' \
		examples/agent.hcl >"$dest/etc/qtune/agent.hcl"
	chmod 0644 "$dest/etc/qtune/agent.hcl"
	if ! grep -q '^dry_run = true' "$dest/etc/qtune/agent.hcl"; then
		echo "install.sh: could not set dry_run = true in $dest/etc/qtune/agent.hcl" >&2
		exit 1
	fi
	echo "installed $dest/etc/qtune/agent.hcl (dry_run = true: nothing is changed until you set it false)"
else
	echo "kept $dest/etc/qtune/agent.hcl as it is"
fi

# Mirrors write only into mirror_dirs; the unit's file system is
# read-only elsewhere, so the drop-in follows the installed config.
dropin="$dest/etc/systemd/system/qtune.service.d/mirror-dirs.conf"
install -d -m 0755 "$(dirname "$dropin")"
"$dest/usr/local/bin/qtune" agent --config "$dest/etc/qtune/agent.hcl" --systemd-dropin >"$dropin"
echo "wrote $dropin (run again after changing mirror_dirs)"

# Example policies only into an empty policy.d: an operator's own set is
# left alone, and a policy deleted on purpose does not come back.
shopt -s nullglob
examples=(examples/policy.d/*.hcl)
shopt -u nullglob
if [[ -z "$(ls -A "$dest/etc/qtune/policy.d")" && ${#examples[@]} -gt 0 ]]; then
	install -m 0644 "${examples[@]}" "$dest/etc/qtune/policy.d/"
	echo "installed ${#examples[@]} example policies into $dest/etc/qtune/policy.d"
else
	echo "kept $dest/etc/qtune/policy.d as it is"
fi

# Whatever policies are in place now, say early if the agent would
# reject them at start.
if ! "$dest/usr/local/bin/qtune" policy check "$dest/etc/qtune/policy.d" >/dev/null; then
	echo "warning: the policies in $dest/etc/qtune/policy.d do not check; fix them before starting qtune" >&2
fi

cat <<'EOF'

qtune is installed but not running. To start it now and at every boot:
  systemctl daemon-reload
  systemctl enable --now qtune
A new install runs in dry-run: it decides and reports (qtune status,
qtune plan) but changes no VM until dry_run = false in
/etc/qtune/agent.hcl and `systemctl restart qtune`.
EOF
