#!/bin/bash
# PID 1 of a fresh pid/mount/cgroup/net namespace: make the host safe, then exec systemd.
# Everything systemd or a test could write is private here: /run, /tmp, /var/lib, /var/log,
# /var/tmp are tmpfs, and /etc is a copy (useradd and unit files never reach the host's).
set -eu
share=${SD_SHARE:?}
src=${SD_SRC:?}
mount -t tmpfs -o mode=755,size=64m tmpfs /run
mkdir -p /run/share /run/src
mount --bind "$share" /run/share
mount --bind "$src" /run/src
mount -o remount,bind,ro /run/src
cp -a /etc "$share/etc"
mount --bind "$share/etc" /etc
for dir in /tmp /var/tmp; do mount -t tmpfs -o mode=1777,size=512m tmpfs "$dir"; done
for dir in /var/lib /var/log; do mount -t tmpfs -o mode=755,size=256m tmpfs "$dir"; done
mkdir -p /var/lib/systemd /var/log/journal
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
mkdir -p /run/systemd/system
cp /run/share/units/* /run/systemd/system/
for u in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.timer \
         systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
         systemd-udevd-control.socket systemd-udevd-kernel.socket kmod-static-nodes.service \
         systemd-sysctl.service systemd-modules-load.service systemd-random-seed.service \
         systemd-binfmt.service systemd-remount-fs.service systemd-sysusers.service \
         systemd-firstboot.service systemd-machine-id-commit.service systemd-update-utmp.service \
         systemd-hwdb-update.service ldconfig.service systemd-journal-flush.service \
         systemd-pstore.service swap.target; do
  ln -sf /dev/null "/run/systemd/system/$u"
done
exec env -i container=tgstream-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=tgstream-test.target --log-level=info --log-target=console
