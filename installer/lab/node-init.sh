#!/bin/sh
# PID 1 of a lab node until it becomes systemd: prepares what a container lacks and a
# Kubernetes node needs, then execs /sbin/init. Runs at every boot of the node.
set -eu

# docker mounts the cgroup hierarchies read-only; the kubelet creates pod cgroups in them.
for mountpoint in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
  mount -o remount,bind,rw "$mountpoint" 2>/dev/null || true
done
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
# Volumes and pods' mounts must propagate (kubelet and containerd rely on shared mounts).
mount --make-rshared /
# The kubelet reads the kernel log.
[ -e /dev/kmsg ] || mknod -m 600 /dev/kmsg c 1 11

# First boot: an identity of the node's own.
[ -s /etc/machine-id ] || systemd-machine-id-setup >/dev/null 2>&1 || true
ssh-keygen -A >/dev/null

# The operator's key, given at creation.
if [ -n "${KINIT_AUTHORIZED_KEYS:-}" ]; then
  for user in root ops opspw; do
    home=$(getent passwd "$user" | cut -d: -f6)
    mkdir -p "$home/.ssh"
    printf '%s\n' "$KINIT_AUTHORIZED_KEYS" > "$home/.ssh/authorized_keys"
    chmod 700 "$home/.ssh"
    chmod 600 "$home/.ssh/authorized_keys"
    chown -R "$user:$user" "$home/.ssh"
  done
fi
unset KINIT_AUTHORIZED_KEYS

exec /sbin/init
