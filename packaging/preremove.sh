#!/bin/sh
# dcroll preremove: the .deb's prerm and the .rpm's %preun.
#   deb: remove | upgrade VERSION | deconfigure ... | failed-upgrade ...
#   rpm: 0 when the package goes away, 1 or more on an upgrade
# Only a removal stops and disables the agent; an upgrade leaves it running
# until postinstall restarts it on the new binary.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0 # a container without systemd

if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	# A failed stop must not make the package impossible to remove.
	systemctl stop dcroll.service || true
fi
systemctl ${DPKG_ROOT:+"--root=$DPKG_ROOT"} disable dcroll.service
