//! From a cluster configuration to the engine's inventory: how to reach each host (SSH
//! settings with the cluster-wide defaults applied, `~` expanded), its roles as groups, and
//! the cluster's facts as variables for templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::{Cluster, Host, Role};
use crate::engine::inventory::{self, Connection, Jump};

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Etcd => "etcd",
        Role::Worker => "worker",
    }
}

/// A host's SSH connection, with the cluster's `ssh` defaults under the host's own settings.
pub fn connection(cluster: &Cluster, host: &Host) -> Connection {
    let ssh = &host.ssh;
    let defaults = &cluster.ssh;
    let user = ssh
        .user
        .clone()
        .or(defaults.user.clone())
        .unwrap_or_else(|| "root".into());
    let identity = ssh
        .identity_file
        .as_ref()
        .or(defaults.identity_file.as_ref())
        .map(|p| expand_home(p));
    let jumps = if ssh.jump.is_empty() {
        &defaults.jump
    } else {
        &ssh.jump
    };
    let mut known_hosts: Vec<PathBuf> = Vec::new();
    for file in [&defaults.known_hosts_file, &ssh.known_hosts_file]
        .into_iter()
        .flatten()
    {
        known_hosts.push(expand_home(file));
    }
    Connection::Ssh {
        address: host.address.to_string(),
        port: ssh.port.or(defaults.port).unwrap_or(22),
        user: user.clone(),
        identity_files: identity.into_iter().collect(),
        jumps: jumps
            .iter()
            .map(|j| Jump {
                user: j.user.clone().unwrap_or_else(|| user.clone()),
                address: j.host.clone(),
                port: j.port,
            })
            .collect(),
        known_hosts_files: known_hosts,
    }
}

/// The inventory of a cluster; `vars` are added to every host's template variables.
pub fn from_cluster(
    cluster: &Cluster,
    vars: BTreeMap<String, serde_json::Value>,
) -> inventory::Inventory {
    let hosts = cluster
        .hosts
        .iter()
        .map(|host| {
            let user_is_root = match connection(cluster, host) {
                Connection::Ssh { user, .. } => user == "root",
                Connection::Local => true,
            };
            let mut groups: Vec<String> = host
                .roles
                .iter()
                .map(|r| role_name(*r).to_owned())
                .collect();
            // Stacked etcd: control planes run members unless the etcd role is given explicitly.
            if cluster.etcd_members().any(|m| m.name == host.name)
                && !groups.iter().any(|g| g == "etcd")
            {
                groups.push("etcd".into());
            }
            inventory::Host {
                name: host.name.to_string(),
                connection: connection(cluster, host),
                sudo: host.sudo.unwrap_or(!user_is_root),
                groups,
                vars: BTreeMap::new(),
            }
        })
        .collect();
    let mut all = vars;
    all.insert("cluster_name".into(), json!(cluster.name()));
    all.insert(
        "kubernetes_version".into(),
        json!(cluster.kubernetes_version.to_string()),
    );
    inventory::Inventory { hosts, vars: all }
}
