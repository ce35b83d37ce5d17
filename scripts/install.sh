#!/usr/bin/env bash
# Installs Bulwark on a Debian/Ubuntu host: the binary, a config (kept if one
# is already there) and the systemd unit. Idempotent: running it again
# updates the binary and unit and leaves the config alone.
#   sudo scripts/install.sh [path/to/bulwark]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-bin/bulwark}
[ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }
if [ ! -x "$bin" ]; then
	make build
fi

install -D -m 0755 "$bin" /usr/local/bin/bulwark
install -d -m 0750 /etc/bulwark /var/log/bulwark
if [ ! -e /etc/bulwark/bulwark.hcl ]; then
	install -m 0640 configs/bulwark.hcl /etc/bulwark/bulwark.hcl
	echo "install: wrote /etc/bulwark/bulwark.hcl: set the interface, then: systemctl enable --now bulwark"
else
	echo "install: kept the existing /etc/bulwark/bulwark.hcl"
fi
install -D -m 0644 configs/systemd/bulwark.service /etc/systemd/system/bulwark.service
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if systemctl is-active --quiet bulwark; then
		/usr/local/bin/bulwark config check /etc/bulwark/bulwark.hcl
		systemctl restart bulwark
		echo "install: restarted bulwark (filtering continued through the restart)"
	fi
fi
echo "install: done"
