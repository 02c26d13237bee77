#!/bin/sh
# Written by kinit: keeps a route to every other node's pod network through that node, and
# masquerades pod traffic that leaves the pod network. It reads the nodes' pod CIDRs (given by
# the controller manager) with the node's own credentials, so it works for nodes that join
# later and after a reboot (routes do not survive one).
self={{ host.address }}
pods={{ network.pod_cidr }}
iptables -t nat -C POSTROUTING -s "$pods" ! -d "$pods" -m comment --comment kinit-pods -j MASQUERADE 2>/dev/null ||
  iptables -t nat -A POSTROUTING -s "$pods" ! -d "$pods" -m comment --comment kinit-pods -j MASQUERADE
while :; do
  /usr/local/bin/kubectl --kubeconfig=/etc/kubernetes/kubelet.conf get nodes -o \
    jsonpath='{range .items[*]}{.spec.podCIDR}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/dev/null |
  while read -r cidr address; do
    if [ -n "$cidr" ] && [ -n "$address" ] && [ "$address" != "$self" ]; then
      # Protocol 213 marks kinit's routes, so that `kinit reset` removes exactly these.
      ip route replace "$cidr" via "$address" proto 213
    fi
  done
  sleep 5
done
