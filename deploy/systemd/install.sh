#!/usr/bin/env bash
# Installs riskwatch for deploy/systemd/riskwatch.service, from this checkout:
#   /opt/riskwatch                    a virtual environment with riskwatch in it
#   /etc/systemd/system/riskwatch.service
#   /etc/riskwatch/rules              the shipped rules (kept if the folder exists)
#   /etc/riskwatch/credentials        for RISKWATCH_TREAD_TOKEN (mode 0700)
#   /usr/share/doc/riskwatch/README.md  the unit's Documentation=
# Run as root: sudo deploy/systemd/install.sh. DESTDIR=/some/root installs under that
# root instead (CI does, and runs systemd-analyze verify on the result).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
root="${DESTDIR:-}"

python3 -m venv "$root/opt/riskwatch"
"$root/opt/riskwatch/bin/pip" install --quiet --no-cache-dir "$repo"
install -D -m 0644 "$repo/deploy/systemd/riskwatch.service" \
  "$root/etc/systemd/system/riskwatch.service"
install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/riskwatch/README.md"
install -d -m 0755 "$root/etc/riskwatch"
install -d -m 0700 "$root/etc/riskwatch/credentials"
if [ ! -d "$root/etc/riskwatch/rules" ]; then
  cp -r "$repo/rules" "$root/etc/riskwatch/rules"
fi
echo "installed. Now put the API token in $root/etc/riskwatch/credentials/RISKWATCH_TREAD_TOKEN"
echo "(mode 0600), settings in $root/etc/riskwatch/riskwatch.env, then:"
echo "  systemctl daemon-reload && systemctl enable --now riskwatch"
