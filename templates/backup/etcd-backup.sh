#!/bin/sh
# Written by kinit: a scheduled backup of etcd member {{ host.name }} of cluster
# {{ cluster_name }} ({{ schedule.cron }}), kept in /var/lib/kinit/backups with its sha256.
# Retention: {% if schedule.keep_last %}the newest {{ schedule.keep_last }}{% endif %}{% if schedule.keep_last and schedule.keep_days %}, and {% endif %}{% if schedule.keep_days %}those younger than {{ schedule.keep_days }} days{% endif %}{% if not schedule.keep_last and not schedule.keep_days %}none, every backup stays{% endif %}.
set -eu
dir=/var/lib/kinit/backups
prefix="{{ cluster_name }}-{{ host.name }}-scheduled"
mkdir -p "$dir"
chmod 700 "$dir"
name="$prefix-$(date -u +%Y%m%d-%H%M%S)"
ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
  --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
  snapshot save "$dir/$name.db" >/dev/null
chmod 600 "$dir/$name.db"
(cd "$dir" && sha256sum "$name.db" > "$name.db.sha256")
echo "backup $name.db: $(stat -c %s "$dir/$name.db") bytes"
{% if schedule.keep_last or schedule.keep_days -%}
# Newest first; a backup either rule keeps stays.
now=$(date +%s)
i=0
for f in $(ls -1t "$dir/$prefix"-*.db); do
  i=$((i + 1))
  kept=no
{% if schedule.keep_last %}  if [ "$i" -le {{ schedule.keep_last }} ]; then kept=yes; fi
{% endif %}{% if schedule.keep_days %}  if [ $((now - $(stat -c %Y "$f"))) -lt {{ schedule.keep_days * 86400 }} ]; then kept=yes; fi
{% endif %}  if [ "$kept" = no ]; then
    rm -f "$f" "$f.sha256"
    echo "retention removed $(basename "$f")"
  fi
done
{% endif -%}
