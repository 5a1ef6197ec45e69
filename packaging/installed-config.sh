#!/usr/bin/env bash
# Turns examples/agent.hcl (stdin) into the agent.hcl an install puts in
# /etc/qtune (stdout): the same settings, but in dry-run, so that a new
# install decides and reports and changes no VM until an SRE sets
# dry_run = false and restarts the service.
set -euo pipefail
out="$(sed 's/^dry_run = false .*$/dry_run = true    # installed in dry-run: set false (then systemctl restart qtune) once `qtune status` shows the decisions you want/')"
if ! grep -q '^dry_run = true' <<<"$out"; then
	echo "installed-config.sh: could not set dry_run = true" >&2
	exit 1
fi
printf '%s\n' "$out"
