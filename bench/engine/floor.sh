#!/usr/bin/env bash
# The floor of the engine benchmark: the least a tool could do for the same work as
# kinit.yaml and ansible.yml. Per host, in parallel: render the templates here, then one ssh
# call over a multiplexed OpenSSH connection (ControlMaster) that ships every file in a tar
# and a script installing those that differ, applying sysctls, (re)starting the service only
# when its unit changed, running the guarded commands and waiting for the port.
#
# usage: floor.sh KEY KNOWN_HOSTS NAME=ADDRESS...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$1 known=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

remote=$(cat <<'SCRIPT'
set -eu
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
tar -x -C "$stage" -f -
changed=0
install_file() { # path mode
  if ! cmp -s "$stage$1" "$1"; then
    mkdir -p "$(dirname "$1")"; cp "$stage$1" "$1.floor"; chmod "$2" "$1.floor"; mv -f "$1.floor" "$1"
    changed=$((changed + 1)); return 0
  fi
  [ "$(stat -c %a "$1")" = "${2#0}" ] || { chmod "$2" "$1"; changed=$((changed + 1)); }
  return 1
}
dir() { # path mode
  if [ ! -d "$1" ] || [ "$(stat -c %a "$1")" != "${2#0}" ]; then mkdir -p "$1"; chmod "$2" "$1"; changed=$((changed + 1)); fi
}
dir /opt/bench 0755; dir /opt/bench/bin 0755; dir /etc/bench 0755; dir /var/lib/bench 0700
for i in 1 2 3 4 5; do install_file /etc/bench/app$i.conf 0644 || true; done
install_file /etc/bench/app6.conf 0600 || true
install_file /opt/bench/bin/blob.bin 0755 || true
install_file /etc/bench/small1.conf 0644 || true
install_file /etc/bench/small2.conf 0644 || true
install_file /opt/bench/bin/hello.sh 0755 || true
if install_file /etc/sysctl.d/90-bench-a.conf 0644; then sysctl -q -p /etc/sysctl.d/90-bench-a.conf; fi
if install_file /etc/sysctl.d/90-bench-b.conf 0644; then sysctl -q -p /etc/sysctl.d/90-bench-b.conf; fi
unit_changed=
if install_file /etc/systemd/system/bench.service 0644; then unit_changed=1; systemctl daemon-reload; fi
if ! systemctl is-enabled -q bench 2>/dev/null; then systemctl enable -q bench; changed=$((changed + 1)); fi
if ! systemctl is-active -q bench; then systemctl start bench; changed=$((changed + 1)); fi
# The unit changed: restart, as the restart handler does in kinit.yaml and ansible.yml.

if [ -n "$unit_changed" ]; then systemctl restart bench; changed=$((changed + 1)); fi
[ -e /var/lib/bench/initialised ] || { date > /var/lib/bench/initialised; changed=$((changed + 1)); }
[ -e /var/lib/bench/hello ] || { /opt/bench/bin/hello.sh > /var/lib/bench/hello; changed=$((changed + 1)); }
[ -e /var/lib/bench/marker ] || { touch /var/lib/bench/marker; changed=$((changed + 1)); }
for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/9100) 2>/dev/null && break; sleep 0.25; done
echo "changed=$changed"
SCRIPT
)

render() { # template name address
  sed -e "s/{{ host.name }}/$2/g" -e "s/{{ host.address }}/$3/g" \
      -e "s/{{ tier }}/benchmark/g" -e "s/{{ domain }}/bench.example/g" "$1"
}

push() { # name address
  local name=$1 address=$2 root=$work/$1
  mkdir -p "$root/etc/bench" "$root/opt/bench/bin" "$root/etc/sysctl.d" "$root/etc/systemd/system"
  for i in 1 2 3 4 5 6; do render "$here/templates/bench/app$i.conf" "$name" "$address" > "$root/etc/bench/app$i.conf"; done
  cp "$here/files/blob.bin" "$here/files/hello.sh" "$root/opt/bench/bin/"
  cp "$here/files/small1.conf" "$here/files/small2.conf" "$root/etc/bench/"
  cp "$here/files/bench.service" "$root/etc/systemd/system/"
  printf 'net.core.somaxconn = 1024\n' > "$root/etc/sysctl.d/90-bench-a.conf"
  printf 'net.ipv4.tcp_keepalive_time = 600\n' > "$root/etc/sysctl.d/90-bench-b.conf"
  local ssh=(ssh -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes -o "UserKnownHostsFile=$known" -o StrictHostKeyChecking=yes
             -o ControlMaster=auto -o "ControlPath=$work/$name.sock" -o ControlPersist=30)
  local result
  result=$(tar -C "$root" -c . | "${ssh[@]}" "root@$address" "bash -c $(printf %q "$remote")")
  "${ssh[@]}" -O exit "root@$address" 2>/dev/null || true
  echo "$name $result"
}

for pair in "$@"; do
  push "${pair%%=*}" "${pair#*=}" &
done
wait
