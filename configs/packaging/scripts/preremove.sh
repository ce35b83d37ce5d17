#!/bin/sh
# Bulwark pre-remove (deb prerm: "remove", "upgrade", ...; rpm %preun: 0 on removal, 1 on upgrade).
# On removal the service is stopped and disabled. An upgrade does nothing here (postinstall try-restarts).
# Stopping the agent does not detach its XDP program unless detach_on_exit = true: the filter stays in place.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop bulwark.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable bulwark.service >/dev/null 2>&1 || true
fi
if [ -d /sys/fs/bpf/bulwark ]; then
	cat <<'MSG' >&2
bulwark: the XDP filter stays attached (fail-static). To detach it from an interface once the agent is
stopped: rm -r /sys/fs/bpf/bulwark/IFACE (removing the pinned link detaches the program)
MSG
fi
exit 0
