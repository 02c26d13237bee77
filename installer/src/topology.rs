//! How each part of a cluster reaches the API server. One rule set, used by the PKI (which
//! names the API server certificate must carry), by kubeconfigs and by the templates.
//!
//! - Operators and `admin.conf` use the control-plane endpoint when one is configured, and
//!   otherwise the first control plane.
//! - Control-plane components and kubelets on control-plane hosts use their local API server
//!   on 127.0.0.1.
//! - Kubelets and kube-proxy on workers use the endpoint when configured; with several control
//!   planes and no endpoint they use a load balancer kinit runs on every worker, listening on
//!   127.0.0.1:6443, so that losing one control plane does not cut nodes off (as k0s and RKE2
//!   do); with one control plane they use it directly.

use std::net::IpAddr;

use crate::config::{Cluster, Host, Role};

pub const API_SERVER_PORT: u16 = 6443;

fn url(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{port}"),
        _ => format!("https://{host}:{port}"),
    }
}

/// The URL operators and `admin.conf` use.
pub fn external_api_url(cluster: &Cluster) -> String {
    match &cluster.control_plane.endpoint {
        Some(endpoint) => url(&endpoint.host, endpoint.port),
        None => cluster
            .control_planes()
            .next()
            .map(|h| url(&h.address.to_string(), API_SERVER_PORT))
            .unwrap_or_else(local_api_url),
    }
}

/// The API server on the same host.
pub fn local_api_url() -> String {
    url("127.0.0.1", API_SERVER_PORT)
}

/// True when workers need kinit's node-local API load balancer.
pub fn needs_node_local_balancer(cluster: &Cluster) -> bool {
    cluster.control_plane.endpoint.is_none() && cluster.control_planes().count() > 1
}

/// The URL a host's kubelet and kube-proxy use.
pub fn node_api_url(cluster: &Cluster, host: &Host) -> String {
    if host.has_role(Role::ControlPlane) || needs_node_local_balancer(cluster) {
        local_api_url()
    } else {
        external_api_url(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Source;

    fn cluster(control_planes: usize, endpoint: Option<&str>) -> Cluster {
        let mut text = String::from(
            "apiVersion: kinit.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nkubernetesVersion: v1.20.2\n",
        );
        if let Some(endpoint) = endpoint {
            text.push_str(&format!("controlPlane: {{endpoint: \"{endpoint}\"}}\n"));
        }
        text.push_str("hosts:\n");
        for i in 0..control_planes {
            text.push_str(&format!(
                "- {{name: cp{i}, address: 10.0.0.{}, roles: [control-plane]}}\n",
                i + 1
            ));
        }
        text.push_str("- {name: w, address: 10.0.0.100, roles: [worker]}\n");
        crate::config::parse(&Source::new("t.yaml", text))
            .unwrap()
            .0
    }

    #[test]
    fn single_control_plane_is_used_directly() {
        let c = cluster(1, None);
        assert_eq!(external_api_url(&c), "https://10.0.0.1:6443");
        assert_eq!(
            node_api_url(&c, c.host("w").unwrap()),
            "https://10.0.0.1:6443"
        );
        assert_eq!(
            node_api_url(&c, c.host("cp0").unwrap()),
            "https://127.0.0.1:6443"
        );
        assert!(!needs_node_local_balancer(&c));
    }

    #[test]
    fn ha_without_endpoint_uses_the_node_local_balancer() {
        let c = cluster(3, None);
        assert!(needs_node_local_balancer(&c));
        assert_eq!(
            node_api_url(&c, c.host("w").unwrap()),
            "https://127.0.0.1:6443"
        );
    }

    #[test]
    fn endpoint_wins() {
        let c = cluster(3, Some("api.example.com:8443"));
        assert!(!needs_node_local_balancer(&c));
        assert_eq!(external_api_url(&c), "https://api.example.com:8443");
        assert_eq!(
            node_api_url(&c, c.host("w").unwrap()),
            "https://api.example.com:8443"
        );
    }
}
