#!/bin/sh
# dcroll postremove: the .deb's postrm and the .rpm's %postun. Tells a
# running systemd that the unit file changed or went away.
set -e

command -v systemctl >/dev/null 2>&1 || exit 0 # a container without systemd

if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
