#!/usr/bin/env bash
# Builds the root file system of a lab node: Debian bookworm with systemd, sshd and the
# operating-system tools Kubernetes nodes rely on, and nothing of Kubernetes itself (kinit
# installs that). Run by `kinit lab up`, which imports the tree as a docker image and caches it
# keyed by this script's checksum.
#
# usage: node-image.sh ROOTFS_DIR [MIRROR]
set -euo pipefail
rootfs=$1
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)

packages=(
  systemd systemd-sysv dbus libpam-systemd     # init, and logind for sudo sessions
  openssh-server openssh-client sudo           # how kinit and operators reach the node
  iproute2 iptables conntrack ebtables ethtool kmod procps util-linux mount socat
  ca-certificates iputils-ping less
  # Debian's cloud images carry Python; so do the lab nodes, so that Ansible can be measured
  # against kinit on the same hosts (docs/benchmarks.md). kinit itself needs no Python.
  python3
)
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" bookworm "$rootfs" "$mirror"

# Each node makes its own identity at first boot (kinit-node-init).
rm -f "$rootfs"/etc/ssh/ssh_host_*
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"

# A container has no consoles to log in on.
ln -sf /dev/null "$rootfs/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
# Pods' PID 1 (sleep, pause) ignore SIGTERM: without a short stop timeout a node halts in 90 s.
mkdir -p "$rootfs/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultTimeoutStopSec=5s\n' > "$rootfs/etc/systemd/system.conf.d/10-kinit-lab.conf"

# sshd: keys for everyone; passwords only for the account that tests password logins.
cat > "$rootfs/etc/ssh/sshd_config.d/10-kinit-lab.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
Match User opspw
    PasswordAuthentication yes
SSHD

# Two non-root administrators: `ops` sudoes without a password, `opspw` with one (set per lab).
chroot "$rootfs" useradd --create-home --shell /bin/bash ops
chroot "$rootfs" useradd --create-home --shell /bin/bash opspw
echo 'ops ALL=(ALL:ALL) NOPASSWD: ALL' > "$rootfs/etc/sudoers.d/ops"
echo 'opspw ALL=(ALL:ALL) ALL' > "$rootfs/etc/sudoers.d/opspw"
chmod 0440 "$rootfs"/etc/sudoers.d/ops "$rootfs"/etc/sudoers.d/opspw

install -m 0755 "$here/node-init.sh" "$rootfs/usr/local/sbin/kinit-node-init"

chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
