//! Checks that span fields: networks that overlap, names and addresses used twice, a cluster
//! without a control plane. Each finding names the field path it is about, so the loader can
//! report it at the right line and column.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{Cluster, Role, nth_address};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Field path in the document's own keys: `hosts[2].address`.
    pub path: String,
    pub message: String,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.into(),
        message: message.into(),
    }
}

fn warning(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        path: path.into(),
        message: message.into(),
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Every problem with a cluster that parsed.
pub fn validate(cluster: &Cluster) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let net = &cluster.networking;
    let (pods, services) = (net.pod_cidr.0, net.service_cidr.0);

    if !cluster.kubernetes_version.at_least(1, 20) {
        found.push(error(
            "kubernetesVersion",
            format!(
                "{} is not supported: kinit installs Kubernetes v1.20 and later",
                cluster.kubernetes_version
            ),
        ));
    }

    // Networks.
    if overlaps(&pods, &services) {
        found.push(error(
            "networking.serviceCIDR",
            format!("{services} overlaps the pod network {pods}; the two must be disjoint"),
        ));
    }
    if matches!(pods, IpNet::V4(_)) != matches!(services, IpNet::V4(_)) {
        found.push(error(
            "networking.serviceCIDR",
            format!("{services} and the pod network {pods} must be of the same IP family"),
        ));
    }
    match nth_address(&net.service_cidr, 10) {
        Some(_) => {}
        None => found.push(error(
            "networking.serviceCIDR",
            format!(
                "{services} has no room for the cluster DNS address (its 10th address); use a prefix of /28 or shorter"
            ),
        )),
    }
    let mask = net.node_cidr_mask_size;
    if mask < pods.prefix_len() || mask > pods.max_prefix_len() - 2 {
        found.push(error(
            "networking.nodeCIDRMaskSize",
            format!(
                "/{mask} does not fit the pod network {pods}: each node's slice must lie inside it and hold at least 2 addresses"
            ),
        ));
    } else {
        let slices = 1u128
            .checked_shl(u32::from(mask - pods.prefix_len()))
            .unwrap_or(u128::MAX);
        if slices < cluster.hosts.len() as u128 {
            found.push(error(
                "networking.podCIDR",
                format!(
                    "{pods} holds {slices} node slices of /{mask}, but the cluster has {} hosts",
                    cluster.hosts.len()
                ),
            ));
        }
    }

    // Hosts.
    if cluster.hosts.is_empty() {
        found.push(error("hosts", "the cluster has no hosts"));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<std::net::IpAddr, usize> = HashMap::new();
    for (i, host) in cluster.hosts.iter().enumerate() {
        let path = format!("hosts[{i}]");
        if let Some(first) = names.insert(host.name.as_str(), i) {
            found.push(error(
                format!("{path}.name"),
                format!(
                    "{:?} is already the name of hosts[{first}]",
                    host.name.as_str()
                ),
            ));
            names.insert(host.name.as_str(), first);
        }
        let ip = host.address.0;
        if let Some(first) = addresses.insert(ip, i) {
            found.push(error(
                format!("{path}.address"),
                format!(
                    "{ip} is already the address of hosts[{first}] ({})",
                    cluster.hosts[first].name
                ),
            ));
            addresses.insert(ip, first);
        }
        for (network, what) in [(pods, "pod network"), (services, "service network")] {
            if network.contains(&ip) {
                found.push(error(
                    format!("{path}.address"),
                    format!(
                        "{ip} lies inside the {what} {network}; hosts need addresses outside it"
                    ),
                ));
            }
        }
        if host.roles.is_empty() {
            found.push(error(
                format!("{path}.roles"),
                "a host needs at least one role: control-plane, etcd or worker",
            ));
        }
        let mut seen = Vec::new();
        for (r, role) in host.roles.iter().enumerate() {
            if seen.contains(role) {
                found.push(error(
                    format!("{path}.roles[{r}]"),
                    "this role is listed twice",
                ));
            }
            seen.push(*role);
        }
        if host.has_role(Role::Etcd) && !host.has_role(Role::ControlPlane) {
            found.push(error(
                format!("{path}.roles"),
                "etcd runs stacked on control-plane hosts: add control-plane to this host or remove etcd",
            ));
        }
        if host.ssh.port == Some(0) {
            found.push(error(format!("{path}.ssh.port"), "0 is not a port"));
        }
    }
    if cluster.ssh.port == Some(0) {
        found.push(error("ssh.port", "0 is not a port"));
    }
    if !cluster.hosts.is_empty() && cluster.control_planes().next().is_none() {
        found.push(error(
            "hosts",
            "no host has the control-plane role; at least one is needed",
        ));
    }
    let members = cluster.etcd_members().count();
    if members > 0 && members.is_multiple_of(2) {
        found.push(warning(
            "hosts",
            format!(
                "{members} etcd members tolerate no more failures than {}; an odd count (1, 3 or 5) is recommended",
                members - 1
            ),
        ));
    }

    // Certificates.
    let certs = &cluster.certificates;
    if certs.validity_days == 0 {
        found.push(error("certificates.validityDays", "must be at least 1 day"));
    }
    if certs.ca_validity_days < certs.validity_days {
        found.push(error(
            "certificates.caValidityDays",
            format!(
                "{} days is shorter than the leaf validity of {} days; a certificate cannot outlive its CA",
                certs.ca_validity_days, certs.validity_days
            ),
        ));
    }
    for (i, san) in cluster.control_plane.extra_sans.iter().enumerate() {
        let valid = san.parse::<std::net::IpAddr>().is_ok()
            || super::is_dns1123_subdomain(san.strip_prefix("*.").unwrap_or(san));
        if !valid {
            found.push(error(
                format!("controlPlane.extraSANs[{i}]"),
                format!("{san:?} is neither an IP address nor a DNS name"),
            ));
        }
    }
    found
}
