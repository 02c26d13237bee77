//! The cluster configuration users write (`cluster.yaml`): the model, loading with located
//! errors, semantic validation and the JSON Schema for editors.
//!
//! ```yaml
//! apiVersion: kinit.io/v1alpha1
//! kind: Cluster
//! metadata: { name: lab }
//! kubernetesVersion: v1.20.2
//! hosts:
//!   - { name: cp1, address: 10.0.0.11, roles: [control-plane] }
//! ```

mod edit;
mod types;
mod validate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use edit::{add_host, with_host};
pub use types::{
    Address, Cidr, DnsDomain, Endpoint, JumpHost, KubernetesVersion, NodeName, is_dns1123_subdomain,
};
pub use validate::{Diagnostic, Severity, validate};

use crate::yaml::{self, LocatedError, Positions, Source};

pub const API_VERSION: &str = "kinit.io/v1alpha1";

/// A Kubernetes cluster: its hosts, version, networking and certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "kinit cluster configuration")]
pub struct Cluster {
    /// Always `kinit.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `Cluster`.
    pub kind: Kind,
    pub metadata: Metadata,
    /// The Kubernetes release to install, such as `v1.30.2`.
    pub kubernetes_version: KubernetesVersion,
    /// SSH settings shared by every host; each host may override them.
    #[serde(default)]
    pub ssh: Ssh,
    /// The machines of the cluster.
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub networking: Networking,
    #[serde(default)]
    pub control_plane: ControlPlane,
    #[serde(default)]
    pub certificates: Certificates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "kinit.io/v1alpha1")]
    V1Alpha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The cluster's name; it names kubeconfig clusters and contexts.
    pub name: NodeName,
}

/// SSH connection settings. Unset fields fall back to the cluster-wide `ssh` section, then to
/// the defaults (user root, port 22, the operator's agent and default keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    /// Login user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Private key file; `~` expands to the operator's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Jump hosts, outermost first, as OpenSSH's ProxyJump: `[user@]host[:port]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jump: Vec<JumpHost>,
    /// A known_hosts file trusted in addition to kinit's own (`~/.kinit/known_hosts`) and the
    /// user's (`~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
}

/// What a host does in the cluster.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs kube-apiserver, kube-controller-manager and kube-scheduler (and, stacked, etcd).
    ControlPlane,
    /// Runs an etcd member. etcd is stacked: only control-plane hosts may have this role. When
    /// no host has it, every control-plane host runs a member.
    Etcd,
    /// Runs workloads.
    Worker,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    /// The node name, a DNS-1123 subdomain; unique in the cluster.
    pub name: NodeName,
    /// The address kinit connects to and the node advertises; unique in the cluster.
    pub address: Address,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "ssh_is_empty")]
    pub ssh: Ssh,
    /// Run privileged steps through sudo. Defaults to true for every user but root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
}

fn ssh_is_empty(ssh: &Ssh) -> bool {
    *ssh == Ssh::default()
}

/// The pod network plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cni {
    /// The standard bridge and host-local plugins with routes between nodes: no images needed.
    #[default]
    Bridge,
    Calico,
    Flannel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    /// The network pods take their addresses from; each node gets a slice of it.
    #[serde(rename = "podCIDR", default = "default_pod_cidr")]
    pub pod_cidr: Cidr,
    /// Prefix length of each node's slice of the pod network.
    #[serde(rename = "nodeCIDRMaskSize", default = "default_node_mask")]
    pub node_cidr_mask_size: u8,
    /// The network of Service ClusterIPs. Its first address is the `kubernetes` Service and
    /// its tenth the cluster DNS.
    #[serde(rename = "serviceCIDR", default = "default_service_cidr")]
    pub service_cidr: Cidr,
    #[serde(default)]
    pub dns_domain: DnsDomain,
    #[serde(default)]
    pub cni: Cni,
}

fn default_pod_cidr() -> Cidr {
    "10.244.0.0/16".parse().expect("valid default")
}

fn default_service_cidr() -> Cidr {
    "10.96.0.0/12".parse().expect("valid default")
}

fn default_node_mask() -> u8 {
    24
}

impl Default for Networking {
    fn default() -> Networking {
        Networking {
            pod_cidr: default_pod_cidr(),
            node_cidr_mask_size: default_node_mask(),
            service_cidr: default_service_cidr(),
            dns_domain: DnsDomain::default(),
            cni: Cni::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    /// A load balancer or DNS name in front of the API servers. Without one, nodes reach the
    /// API through a load balancer kinit runs on each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Extra names and addresses for the API server certificate.
    #[serde(rename = "extraSANs", default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certificates {
    /// Algorithm of new keys; existing keys are kept.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of leaf certificates and kubeconfig credentials, in days.
    #[serde(default = "default_leaf_days")]
    pub validity_days: u32,
    /// Lifetime of new certificate authorities, in days.
    #[serde(default = "default_ca_days")]
    pub ca_validity_days: u32,
}

fn default_leaf_days() -> u32 {
    365
}

fn default_ca_days() -> u32 {
    3650
}

impl Default for Certificates {
    fn default() -> Certificates {
        Certificates {
            key_algorithm: KeyAlgorithm::default(),
            validity_days: default_leaf_days(),
            ca_validity_days: default_ca_days(),
        }
    }
}

impl Host {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Cluster {
    pub fn name(&self) -> &str {
        self.metadata.name.as_str()
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name.as_str() == name)
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.has_role(Role::ControlPlane))
    }

    /// etcd members: the hosts with the `etcd` role, or every control plane when none has it.
    pub fn etcd_members(&self) -> impl Iterator<Item = &Host> {
        let explicit = self.hosts.iter().any(|h| h.has_role(Role::Etcd));
        self.hosts.iter().filter(move |h| {
            if explicit {
                h.has_role(Role::Etcd)
            } else {
                h.has_role(Role::ControlPlane)
            }
        })
    }

    /// The `kubernetes` Service's ClusterIP: the first address of the service network.
    pub fn kubernetes_service_ip(&self) -> Option<IpAddr> {
        nth_address(&self.networking.service_cidr, 1)
    }

    /// The cluster DNS Service's ClusterIP: the tenth address, as kubeadm chooses it.
    pub fn dns_service_ip(&self) -> Option<IpAddr> {
        nth_address(&self.networking.service_cidr, 10)
    }
}

/// The `n`th address of a network (0 is the network address), if the network holds it.
pub fn nth_address(cidr: &Cidr, n: u128) -> Option<IpAddr> {
    let net = cidr.0;
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    // The last address of an IPv4 network is its broadcast address.
    let usable_end = match net {
        ipnet::IpNet::V4(_) => (1u128 << host_bits) - 1,
        ipnet::IpNet::V6(_) => 1u128.checked_shl(host_bits).unwrap_or(u128::MAX),
    };
    if n >= usable_end {
        return None;
    }
    Some(match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + n).into()),
    })
}

/// A configuration file read and validated, with its warnings.
#[derive(Debug, Clone)]
pub struct LoadedCluster {
    pub cluster: Cluster,
    pub path: PathBuf,
    pub warnings: Vec<LocatedError>,
}

impl LoadedCluster {
    /// Where kinit keeps this cluster's PKI, journals and backups unless told otherwise:
    /// `.kinit/<cluster>/` beside the configuration file.
    pub fn state_dir(&self) -> crate::state::StateDir {
        crate::state::StateDir::beside(&self.path, self.cluster.name())
    }
}

/// Why a configuration could not be used: every problem found, each located.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { errors: Vec<LocatedError> },
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<LoadedCluster, ConfigError> {
    let source = Source::read(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        source: std::sync::Arc::new(e),
    })?;
    let (cluster, warnings) = parse(&source)?;
    Ok(LoadedCluster {
        cluster,
        path: path.to_owned(),
        warnings,
    })
}

/// Parses and validates configuration text; returns the cluster and its warnings.
pub fn parse(source: &Source) -> Result<(Cluster, Vec<LocatedError>), ConfigError> {
    let blank = |line: &str| line.trim().is_empty() || line.trim_start().starts_with('#');
    if source.text.lines().all(blank) {
        return Err(ConfigError::Invalid {
            errors: vec![LocatedError {
                file: source.name.clone(),
                position: None,
                message: "the file is empty; expected a cluster configuration \
                          (apiVersion: kinit.io/v1alpha1, kind: Cluster, …; see examples/cluster.yaml)"
                    .into(),
            }],
        });
    }
    let cluster: Cluster =
        yaml::parse(source).map_err(|e| ConfigError::Invalid { errors: vec![e] })?;
    let positions = Positions::index(&source.text);
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for diagnostic in validate(&cluster) {
        let located = positions.error_at(source, &diagnostic.path, &diagnostic.message);
        match diagnostic.severity {
            Severity::Error => errors.push(located),
            Severity::Warning => warnings.push(located),
        }
    }
    if errors.is_empty() {
        Ok((cluster, warnings))
    } else {
        errors.sort_by_key(|e| e.position);
        Err(ConfigError::Invalid { errors })
    }
}

/// The JSON Schema of the configuration, for editors.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Cluster)).expect("a schema serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addresses() {
        let cidr: Cidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(nth_address(&cidr, 1), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(nth_address(&cidr, 10), Some("10.96.0.10".parse().unwrap()));
        let tiny: Cidr = "10.96.0.0/29".parse().unwrap();
        assert_eq!(nth_address(&tiny, 6), Some("10.96.0.6".parse().unwrap()));
        assert_eq!(nth_address(&tiny, 7), None, "broadcast");
        assert_eq!(nth_address(&tiny, 10), None);
        let v6: Cidr = "fd00:10:96::/112".parse().unwrap();
        assert_eq!(nth_address(&v6, 10), Some("fd00:10:96::a".parse().unwrap()));
    }

    #[test]
    fn schema_describes_hosts() {
        let schema = schema();
        let text = schema.to_string();
        assert!(text.contains("\"hosts\""), "{text}");
        assert!(text.contains("control-plane"));
        assert!(text.contains("is not") || text.contains("DNS-1123"));
    }
}
