//! The kubeadm certificate layout: which authorities and leaves a cluster has, what each must
//! state (CN, O, usage, SANs, following `cmd/kubeadm/app/phases/certs/certlist.go`), and where
//! each lives under a directory shaped like `/etc/kubernetes`.
//!
//! Two placements exist. [`Placement::Cluster`] is the operator's copy of a whole cluster's
//! PKI: shared material at kubeadm's paths, per-node material (each control plane's apiserver
//! certificate, each etcd member's server and peer certificates) under `pki/nodes/<node>/`, and
//! one kubelet kubeconfig per node named `kubelet-<node>.conf`. [`Placement::Node`] is one
//! machine's `/etc/kubernetes`, with kubeadm's exact file names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::certificate::{CertificateSpec, Sans, Usage};

/// A node that runs a control-plane or etcd member: its name and the address it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
}

/// The group that makes a certificate a cluster administrator. kubeadm moved from
/// `system:masters` (which no RBAC rule can revoke) to `kubeadm:cluster-admins` in v1.29.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminGroup {
    SystemMasters,
    ClusterAdmins,
}

impl AdminGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminGroup::SystemMasters => "system:masters",
            AdminGroup::ClusterAdmins => "kubeadm:cluster-admins",
        }
    }
}

/// The facts about a cluster that its certificates state.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub dns_domain: String,
    /// The first address of the service CIDR: the `kubernetes` Service's ClusterIP.
    pub kubernetes_service_ip: IpAddr,
    /// Host part (DNS name or IP) of the control-plane endpoint, when one is configured.
    pub control_plane_endpoint: Option<String>,
    pub extra_sans: Vec<String>,
    pub control_planes: Vec<Member>,
    pub etcd_members: Vec<Member>,
    /// Every node that runs a kubelet.
    pub kubelets: Vec<String>,
    pub admin_group: AdminGroup,
}

/// Which authority signs a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    Ca,
    FrontProxyCa,
    EtcdCa,
}

impl Signer {
    pub const ALL: [Signer; 3] = [Signer::Ca, Signer::FrontProxyCa, Signer::EtcdCa];

    /// The authority's path under `pki/`, without extension.
    pub fn stem(self) -> &'static str {
        match self {
            Signer::Ca => "ca",
            Signer::FrontProxyCa => "front-proxy-ca",
            Signer::EtcdCa => "etcd/ca",
        }
    }

    /// kubeadm's name for the authority, as `check-expiration` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Signer::Ca => "ca",
            Signer::FrontProxyCa => "front-proxy-ca",
            Signer::EtcdCa => "etcd-ca",
        }
    }

    pub fn common_name(self) -> &'static str {
        match self {
            Signer::Ca => "kubernetes",
            Signer::FrontProxyCa => "front-proxy-ca",
            Signer::EtcdCa => "etcd-ca",
        }
    }
}

/// A leaf certificate file pair under `pki/`.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// kubeadm's name for the certificate (`apiserver`, `etcd-server`, …).
    pub name: &'static str,
    /// The node a per-node certificate belongs to.
    pub node: Option<String>,
    /// Path under `pki/` without extension; `.crt` and `.key` are added.
    pub stem: PathBuf,
    pub signer: Signer,
    pub spec: CertificateSpec,
}

/// The client credential of a kubeconfig; always signed by the cluster CA.
#[derive(Debug, Clone)]
pub struct KubeconfigCredential {
    /// kubeadm's name (`admin.conf`, …; `kubelet.conf` for every node's kubelet).
    pub name: &'static str,
    pub node: Option<String>,
    /// Path of the kubeconfig relative to the directory (not to `pki/`).
    pub file: PathBuf,
    pub spec: CertificateSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The operator's copy of the whole cluster.
    Cluster,
    /// One node's `/etc/kubernetes`.
    Node(String),
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub leaves: Vec<Leaf>,
    pub kubeconfigs: Vec<KubeconfigCredential>,
}

impl ClusterPki {
    pub fn layout(&self, placement: &Placement) -> Layout {
        let wanted = |node: &str| match placement {
            Placement::Cluster => true,
            Placement::Node(only) => only == node,
        };
        let node_stem = |node: &str, kubeadm_stem: &str| match placement {
            Placement::Cluster => PathBuf::from(format!("nodes/{node}/{kubeadm_stem}")),
            Placement::Node(_) => PathBuf::from(kubeadm_stem),
        };
        let client = |cn: &str, org: Option<&str>| CertificateSpec {
            common_name: cn.to_owned(),
            organization: org.map(str::to_owned),
            usage: Usage::Client,
            sans: Sans::default(),
        };
        let shared = |name, stem: &str, signer, spec| Leaf {
            name,
            node: None,
            stem: PathBuf::from(stem),
            signer,
            spec,
        };
        let admin = self.admin_group.as_str();

        let mut leaves = Vec::new();
        for member in self.control_planes.iter().filter(|m| wanted(&m.name)) {
            leaves.push(Leaf {
                name: "apiserver",
                node: Some(member.name.clone()),
                stem: node_stem(&member.name, "apiserver"),
                signer: Signer::Ca,
                spec: CertificateSpec {
                    common_name: "kube-apiserver".into(),
                    organization: None,
                    usage: Usage::Server,
                    sans: self.apiserver_sans(member),
                },
            });
        }
        leaves.push(shared(
            "apiserver-kubelet-client",
            "apiserver-kubelet-client",
            Signer::Ca,
            client("kube-apiserver-kubelet-client", Some(admin)),
        ));
        leaves.push(shared(
            "front-proxy-client",
            "front-proxy-client",
            Signer::FrontProxyCa,
            client("front-proxy-client", None),
        ));
        for member in self.etcd_members.iter().filter(|m| wanted(&m.name)) {
            for (name, stem) in [("etcd-server", "etcd/server"), ("etcd-peer", "etcd/peer")] {
                leaves.push(Leaf {
                    name,
                    node: Some(member.name.clone()),
                    stem: node_stem(&member.name, stem),
                    signer: Signer::EtcdCa,
                    spec: CertificateSpec {
                        common_name: member.name.clone(),
                        organization: None,
                        usage: Usage::ServerAndClient,
                        sans: etcd_sans(member),
                    },
                });
            }
        }
        // kubeadm dropped system:masters from the etcd client certificates in v1.22; etcd
        // authenticates them by CA alone, so the group never mattered there.
        leaves.push(shared(
            "etcd-healthcheck-client",
            "etcd/healthcheck-client",
            Signer::EtcdCa,
            client("kube-etcd-healthcheck-client", None),
        ));
        leaves.push(shared(
            "apiserver-etcd-client",
            "apiserver-etcd-client",
            Signer::EtcdCa,
            client("kube-apiserver-etcd-client", None),
        ));

        let conf = |name: &'static str, cn: &str, org: Option<&str>| KubeconfigCredential {
            name,
            node: None,
            file: PathBuf::from(name),
            spec: client(cn, org),
        };
        let mut kubeconfigs = vec![
            conf("admin.conf", "kubernetes-admin", Some(admin)),
            conf(
                "super-admin.conf",
                "kubernetes-super-admin",
                Some("system:masters"),
            ),
            conf(
                "controller-manager.conf",
                "system:kube-controller-manager",
                None,
            ),
            conf("scheduler.conf", "system:kube-scheduler", None),
        ];
        for node in self.kubelets.iter().filter(|n| wanted(n)) {
            kubeconfigs.push(KubeconfigCredential {
                name: "kubelet.conf",
                node: Some(node.clone()),
                file: match placement {
                    Placement::Cluster => PathBuf::from(format!("kubelet-{node}.conf")),
                    Placement::Node(_) => PathBuf::from("kubelet.conf"),
                },
                spec: client(&format!("system:node:{node}"), Some("system:nodes")),
            });
        }
        Layout {
            leaves,
            kubeconfigs,
        }
    }

    /// kubeadm's apiserver names, plus loopback: kinit's control-plane components and the
    /// node-local API load balancer on every node reach the API server on 127.0.0.1.
    fn apiserver_sans(&self, member: &Member) -> Sans {
        let mut sans = Sans::default();
        for name in [
            member.name.as_str(),
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            &format!("kubernetes.default.svc.{}", self.dns_domain),
            "localhost",
        ] {
            sans.add(name);
        }
        sans.ips.insert(self.kubernetes_service_ip);
        sans.ips.insert(member.address);
        sans.ips.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if let Some(endpoint) = &self.control_plane_endpoint {
            sans.add(endpoint);
        }
        for extra in &self.extra_sans {
            sans.add(extra);
        }
        sans
    }
}

fn etcd_sans(member: &Member) -> Sans {
    let mut sans = Sans::default();
    sans.add(&member.name);
    sans.add("localhost");
    sans.ips.insert(member.address);
    sans.ips.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    sans.ips.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    sans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterPki {
        let members: Vec<Member> = (1..=3)
            .map(|i| Member {
                name: format!("cp{i}"),
                address: format!("10.0.0.{i}").parse().unwrap(),
            })
            .collect();
        ClusterPki {
            dns_domain: "cluster.local".into(),
            kubernetes_service_ip: "10.96.0.1".parse().unwrap(),
            control_plane_endpoint: Some("api.example.com".into()),
            extra_sans: vec!["10.1.1.1".into()],
            control_planes: members.clone(),
            etcd_members: members,
            kubelets: vec!["cp1".into(), "cp2".into(), "cp3".into(), "w1".into()],
            admin_group: AdminGroup::ClusterAdmins,
        }
    }

    #[test]
    fn cluster_placement_has_per_node_material() {
        let layout = cluster().layout(&Placement::Cluster);
        let stems: Vec<String> = layout
            .leaves
            .iter()
            .map(|l| l.stem.display().to_string())
            .collect();
        assert!(stems.contains(&"nodes/cp2/apiserver".to_owned()));
        assert!(stems.contains(&"nodes/cp3/etcd/peer".to_owned()));
        assert!(stems.contains(&"apiserver-etcd-client".to_owned()));
        // 3 apiservers + 6 etcd server/peer + 4 shared leaves.
        assert_eq!(layout.leaves.len(), 13);
        let files: Vec<String> = layout
            .kubeconfigs
            .iter()
            .map(|k| k.file.display().to_string())
            .collect();
        assert!(files.contains(&"kubelet-w1.conf".to_owned()));
        assert_eq!(layout.kubeconfigs.len(), 8);
    }

    #[test]
    fn node_placement_uses_kubeadm_names() {
        let layout = cluster().layout(&Placement::Node("cp2".into()));
        let apiserver = layout
            .leaves
            .iter()
            .find(|l| l.name == "apiserver")
            .unwrap();
        assert_eq!(apiserver.stem, PathBuf::from("apiserver"));
        assert!(apiserver.spec.sans.dns.contains("cp2"));
        assert!(!apiserver.spec.sans.dns.contains("cp1"));
        assert_eq!(
            layout
                .leaves
                .iter()
                .filter(|l| l.name == "apiserver")
                .count(),
            1
        );
        let kubelet = layout
            .kubeconfigs
            .iter()
            .find(|k| k.name == "kubelet.conf")
            .unwrap();
        assert_eq!(kubelet.file, PathBuf::from("kubelet.conf"));
        assert_eq!(kubelet.spec.common_name, "system:node:cp2");
    }

    #[test]
    fn apiserver_names_follow_kubeadm() {
        let pki = cluster();
        let sans = pki.apiserver_sans(&pki.control_planes[0]);
        for dns in [
            "cp1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "api.example.com",
        ] {
            assert!(sans.dns.contains(dns), "missing {dns}");
        }
        for ip in ["10.96.0.1", "10.0.0.1", "10.1.1.1", "127.0.0.1"] {
            assert!(sans.ips.contains(&ip.parse().unwrap()), "missing {ip}");
        }
    }
}
