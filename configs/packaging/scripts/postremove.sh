#!/bin/sh
# Bulwark post-remove (deb postrm: "remove", "purge", "upgrade", ...; rpm %postun: 0 on removal, 1 on upgrade).
# Purge (deb) deletes the config, the state (flight recorder files) and the logs. Neither removal nor purge
# detaches a filter that is still attached: the message says how.
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
	fi
	;;
esac

if [ "$1" = purge ]; then
	rm -rf /etc/bulwark /var/lib/bulwark /var/log/bulwark
	if [ -d /sys/fs/bpf/bulwark ]; then
		cat <<'MSG' >&2
bulwark: pins remain under /sys/fs/bpf/bulwark, so the XDP filter may still be attached. To detach it:
rm -r /sys/fs/bpf/bulwark (removing the pinned links detaches the program from each interface)
MSG
	fi
fi
exit 0
