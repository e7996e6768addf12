#!/bin/sh
# dcroll postinstall: the .deb's postinst and the .rpm's %post.
#   deb: configure [VERSION-REPLACED]  (no version on a first install)
#   rpm: 1 on a first install, 2 or more on an upgrade
# A first install enables the agent but does not start it: the host config
# must name the ensemble and the services first. An upgrade restarts an
# agent that is running and leaves a stopped one stopped.
set -e

case "$1" in
configure) if [ -z "$2" ]; then action=install; else action=upgrade; fi ;;
1) action=install ;;
[0-9]*) action=upgrade ;;
*) exit 0 ;; # deb abort-upgrade, abort-remove, abort-deconfigure
esac

command -v systemctl >/dev/null 2>&1 || exit 0 # a container without systemd

# live: systemd runs this machine, and we are not installing into another
# root (dpkg --root sets DPKG_ROOT and runs us outside it).
live() { [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; }

if live; then
	systemctl daemon-reload
fi
if [ "$action" = install ]; then
	# enable only writes symlinks: it works in a chroot or an image too.
	systemctl ${DPKG_ROOT:+"--root=$DPKG_ROOT"} enable dcroll.service
elif live; then
	systemctl try-restart dcroll.service
fi
