#!/usr/bin/env bash
# Installs qtune, its systemd unit, the default config and the example
# policies under $DESTDIR (default /). Never overwrites a config or a
# policy that is already there; never starts the service.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${DESTDIR:-}"

install -d "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/etc/qtune/policy.d" "$dest/usr/local/share/doc/qtune"
go build -trimpath -o "$dest/usr/local/bin/qtune" ./cmd/qtune
install -m 0644 systemd/qtune.service "$dest/etc/systemd/system/qtune.service"
install -m 0644 README.md docs/metrics.md "$dest/usr/local/share/doc/qtune/"
if [ ! -e "$dest/etc/qtune/agent.hcl" ]; then
	install -m 0644 examples/agent.hcl "$dest/etc/qtune/agent.hcl"
fi
if [ -z "$(ls -A "$dest/etc/qtune/policy.d")" ]; then
	install -m 0644 examples/policy.d/*.hcl "$dest/etc/qtune/policy.d/"
fi
"$dest/usr/local/bin/qtune" policy check "$dest/etc/qtune/policy.d" >/dev/null
echo "installed; to run it:"
echo "  systemctl daemon-reload && systemctl enable --now qtune"
