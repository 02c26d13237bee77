//! A cluster's health at a glance, for `kinit status` and the console's overview: each host's
//! reachability and services, each node's readiness and version as the API server sees them,
//! and each etcd member's health. A host that cannot be reached is reported, not skipped.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Cluster, Role};
use crate::engine::runner::Runner;

/// Units kinit runs, by role.
fn units(roles: &[Role]) -> Vec<&'static str> {
    let mut units = vec!["containerd", "kubelet", "kube-proxy"];
    if roles.contains(&Role::ControlPlane) {
        units.extend([
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]);
    }
    units
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    /// Why the host could not be reached, when it could not.
    pub unreachable: Option<String>,
    /// systemd state of each of kinit's units (`active`, `inactive`, `failed`, …).
    pub services: BTreeMap<String, String>,
    /// As the API server reports the node.
    pub ready: Option<bool>,
    pub kubelet_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdMember {
    pub endpoint: String,
    pub healthy: bool,
    pub leader: bool,
    pub db_size: Option<u64>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub kubernetes_version: String,
    pub nodes: Vec<NodeStatus>,
    pub etcd: Vec<EtcdMember>,
    /// Why the API server or etcd could not be asked, when they could not.
    pub api_error: Option<String>,
}

const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt \
    --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

pub async fn status(cluster: &Cluster, runner: &Runner) -> ClusterStatus {
    let hosts: Vec<String> = cluster.hosts.iter().map(|h| h.name.to_string()).collect();
    let script = "for u in containerd kubelet kube-proxy etcd kube-apiserver kube-controller-manager kube-scheduler; do \
                  echo \"svc:$u=$(systemctl is-active $u 2>/dev/null)\"; done";
    let probed = runner.probe(&hosts, script).await;
    let mut nodes: Vec<NodeStatus> = cluster
        .hosts
        .iter()
        .map(|host| {
            let name = host.name.to_string();
            let (unreachable, services) = match probed.get(&name) {
                Some(Ok((_, out))) => {
                    let states: BTreeMap<String, String> = out
                        .lines()
                        .filter_map(|l| l.strip_prefix("svc:")?.split_once('='))
                        .map(|(u, s)| {
                            (
                                u.to_owned(),
                                if s.is_empty() {
                                    "unknown".to_owned()
                                } else {
                                    s.to_owned()
                                },
                            )
                        })
                        .collect();
                    let wanted = units(&host.roles);
                    (
                        None,
                        states
                            .into_iter()
                            .filter(|(u, _)| wanted.contains(&u.as_str()))
                            .collect(),
                    )
                }
                Some(Err(e)) => (Some(e.clone()), BTreeMap::new()),
                None => (Some("not probed".into()), BTreeMap::new()),
            };
            NodeStatus {
                name,
                address: host.address.to_string(),
                roles: host
                    .roles
                    .iter()
                    .map(|r| super::inventory::role_name(*r).to_owned())
                    .collect(),
                unreachable,
                services,
                ready: None,
                kubelet_version: None,
            }
        })
        .collect();

    // Ask the first control plane that answers for the cluster's view.
    let mut api_error = Some("no control plane could be reached".to_owned());
    let mut etcd = Vec::new();
    let members: Vec<String> = cluster
        .etcd_members()
        .map(|m| format!("https://{}:2379", m.address))
        .collect();
    for control_plane in cluster.control_planes() {
        let name = control_plane.name.to_string();
        if nodes
            .iter()
            .any(|n| n.name == name && n.unreachable.is_some())
        {
            continue;
        }
        let script = format!(
            "kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes -o json --request-timeout=5s; echo '@@etcd'; \
             {ETCDCTL} --endpoints={} --command-timeout=3s endpoint status -w json 2>/dev/null",
            members.join(",")
        );
        let answer = runner.probe(std::slice::from_ref(&name), &script).await;
        let Some(Ok((_, out))) = answer.get(&name) else {
            continue;
        };
        let (api, etcd_json) = out.split_once("@@etcd").unwrap_or((out, ""));
        match serde_json::from_str::<Value>(api) {
            Ok(list) => {
                api_error = None;
                for item in list["items"].as_array().into_iter().flatten() {
                    let node_name = item["metadata"]["name"].as_str().unwrap_or_default();
                    let ready = item["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["type"] == "Ready")
                        .map(|c| c["status"] == "True");
                    if let Some(node) = nodes.iter_mut().find(|n| n.name == node_name) {
                        node.ready = ready;
                        node.kubelet_version = item["status"]["nodeInfo"]["kubeletVersion"]
                            .as_str()
                            .map(str::to_owned);
                    }
                }
            }
            Err(_) => api_error = Some(format!("the API server on {name} did not answer")),
        }
        let statuses: Vec<Value> = serde_json::from_str(etcd_json.trim()).unwrap_or_default();
        for endpoint in &members {
            let found = statuses
                .iter()
                .find(|s| s["Endpoint"].as_str() == Some(endpoint));
            etcd.push(EtcdMember {
                endpoint: endpoint.clone(),
                healthy: found.is_some(),
                leader: found
                    .is_some_and(|s| s["Status"]["header"]["member_id"] == s["Status"]["leader"]),
                db_size: found.and_then(|s| s["Status"]["dbSize"].as_u64()),
                version: found.and_then(|s| s["Status"]["version"].as_str().map(str::to_owned)),
            });
        }
        if api_error.is_none() {
            break;
        }
    }
    ClusterStatus {
        cluster: cluster.name().to_owned(),
        kubernetes_version: cluster.kubernetes_version.to_string(),
        nodes,
        etcd,
        api_error,
    }
}
