#!/usr/bin/env bash
# Prints the version a build of this tree carries, as Debian orders it:
# a tag vX.Y.Z gives X.Y.Z, N commits after it X.Y.Z+N.gHASH, and with no
# tag 0.0.0~gitYYYYMMDDhhmmss.HASH (the commit's time, so a later commit
# sorts later, and before any tagged release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if d="$(git describe --tags --match 'v[0-9]*' 2>/dev/null)"; then
	d="${d#v}"
	if [[ "$d" =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		echo "${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	else
		echo "$d"
	fi
	exit 0
fi
echo "0.0.0~git$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd).$(git rev-parse --short=12 HEAD)"
