//! The hosts a playbook runs on, as the engine sees them: how to reach each one, the groups it
//! belongs to and its variables. Operations build an inventory from a cluster configuration;
//! the engine knows nothing of clusters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// One hop of an SSH jump chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jump {
    pub user: String,
    pub address: String,
    pub port: u16,
}

/// How to reach a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Connection {
    /// The machine kinit runs on.
    Local,
    Ssh {
        address: String,
        port: u16,
        user: String,
        /// Private key files to offer, in order; the agent's keys are offered first.
        identity_files: Vec<PathBuf>,
        /// Jump hosts, outermost first.
        jumps: Vec<Jump>,
        /// known_hosts files trusted in addition to kinit's own and the user's.
        known_hosts_files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub connection: Connection,
    /// Run privileged steps through sudo (for users other than root).
    pub sudo: bool,
    pub groups: Vec<String>,
    /// Variables templates and conditions see as `host.vars`.
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl Host {
    /// Where the host is, for messages: `root@10.0.0.1:22`.
    pub fn describe(&self) -> String {
        match &self.connection {
            Connection::Local => "the local machine".into(),
            Connection::Ssh {
                address,
                port,
                user,
                ..
            } => format!("{user}@{address}:{port}"),
        }
    }

    /// The address other hosts reach this one at. A local host has no connection address, so
    /// its `address` variable gives it (`kinit init` on a machine sets it).
    pub fn address(&self) -> Option<&str> {
        match &self.connection {
            Connection::Local => self.vars.get("address").and_then(|a| a.as_str()),
            Connection::Ssh { address, .. } => Some(address),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    /// Variables every host sees as `vars`.
    pub vars: BTreeMap<String, serde_json::Value>,
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Hosts matching a pattern: `all`, a group name, a host name, or several joined by `,`
    /// (`control-plane,node3`). Order follows the inventory.
    pub fn select(&self, pattern: &str) -> Vec<&Host> {
        let parts: Vec<&str> = pattern
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        self.hosts
            .iter()
            .filter(|h| {
                parts
                    .iter()
                    .any(|p| *p == "all" || *p == h.name || h.groups.iter().any(|g| g == p))
            })
            .collect()
    }

    /// Group name → member names, for templates.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for host in &self.hosts {
            groups
                .entry("all".into())
                .or_default()
                .push(host.name.clone());
            for group in &host.groups {
                groups
                    .entry(group.clone())
                    .or_default()
                    .push(host.name.clone());
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, groups: &[&str]) -> Host {
        Host {
            name: name.into(),
            connection: Connection::Local,
            sudo: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            vars: BTreeMap::new(),
        }
    }

    #[test]
    fn selection_by_group_name_and_list() {
        let inventory = Inventory {
            hosts: vec![
                host("a", &["control-plane"]),
                host("b", &["worker"]),
                host("c", &["worker"]),
            ],
            vars: BTreeMap::new(),
        };
        let names = |p: &str| {
            inventory
                .select(p)
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("all"), ["a", "b", "c"]);
        assert_eq!(names("worker"), ["b", "c"]);
        assert_eq!(names("control-plane,c"), ["a", "c"]);
        assert!(names("nobody").is_empty());
        assert_eq!(inventory.groups()["worker"], ["b", "c"]);
    }
}
