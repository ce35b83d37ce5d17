#!/bin/sh
# Bulwark post-install (deb postinst: "configure [OLD-VERSION]"; rpm %post: 1 on install, 2 on upgrade).
# A first install enables and starts nothing: the default config names no real interface. An upgrade restarts the
# agent only if it was running (systemctl try-restart); its XDP program and pinned maps stay attached through the
# restart, so filtering never stops. Without systemd as init (containers, chroots) the service is left alone.
set -e

upgrade=
case "$1" in
configure) [ -z "$2" ] || upgrade=1 ;;
2) upgrade=1 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
	if [ -n "$upgrade" ]; then
		systemctl try-restart bulwark.service ||
			echo "bulwark: restart failed (see: journalctl -u bulwark); the XDP program stays attached" >&2
	fi
fi

if [ -z "$upgrade" ]; then
	cat <<'MSG'
bulwark: installed, not enabled. Set the interface in /etc/bulwark/bulwark.hcl (it starts in monitor mode), then:
  bulwark config check /etc/bulwark/bulwark.hcl && systemctl enable --now bulwark
MSG
fi
exit 0
