//! Kubeconfig files: the client credentials kubeadm writes under `/etc/kubernetes` (admin,
//! super-admin, controller-manager, scheduler, kubelet), built from certificates the `pki`
//! crate issues, and read back to check or renew the certificate they embed.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::yaml::{self, Source};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub preferences: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEntry {
    pub server: String,
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
    /// Other fields (proxy-url, tls-server-name, …) are kept as they are.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: UserEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate_data: Option<String>,
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Other fields (client-certificate paths of a rotated kubelet, exec, …) are kept.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// What a kubeconfig authenticates with.
pub enum Credentials<'a> {
    Certificate {
        certificate_pem: &'a str,
        key_pem: &'a str,
    },
    /// A bearer token, such as a bootstrap token.
    Token(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{0}")]
    Parse(#[from] yaml::LocatedError),
    #[error("{file}: {problem}")]
    Content { file: String, problem: String },
}

impl Kubeconfig {
    /// A kubeconfig with one cluster, one user and one context, named as kubeadm names them
    /// (`<user>@<cluster>`).
    pub fn new(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user_name: &str,
        credentials: Credentials<'_>,
    ) -> Kubeconfig {
        let user = match credentials {
            Credentials::Certificate {
                certificate_pem,
                key_pem,
            } => UserEntry {
                client_certificate_data: Some(BASE64.encode(certificate_pem)),
                client_key_data: Some(BASE64.encode(key_pem)),
                token: None,
                other: BTreeMap::new(),
            },
            Credentials::Token(token) => UserEntry {
                client_certificate_data: None,
                client_key_data: None,
                token: Some(token.to_owned()),
                other: BTreeMap::new(),
            },
        };
        let context = format!("{user_name}@{cluster_name}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster_name.into(),
                cluster: ClusterEntry {
                    server: server.into(),
                    certificate_authority_data: Some(BASE64.encode(ca_pem)),
                    other: BTreeMap::new(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextEntry {
                    cluster: cluster_name.into(),
                    user: user_name.into(),
                    other: BTreeMap::new(),
                },
            }],
            current_context: context,
            users: vec![NamedUser {
                name: user_name.into(),
                user,
            }],
            preferences: BTreeMap::new(),
        }
    }

    pub fn parse(source: &Source) -> Result<Kubeconfig, KubeconfigError> {
        Ok(yaml::parse(source)?)
    }

    pub fn read(path: &Path) -> Result<Option<Kubeconfig>, KubeconfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Kubeconfig::parse(&Source::new(path, text)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KubeconfigError::Content {
                file: path.display().to_string(),
                problem: e.to_string(),
            }),
        }
    }

    pub fn to_yaml(&self) -> String {
        yaml::to_string(self).expect("a kubeconfig always serialises")
    }

    fn current(&self) -> Option<(&NamedCluster, &NamedUser)> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .or(self.contexts.first())?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)?;
        let user = self.users.iter().find(|u| u.name == context.context.user)?;
        Some((cluster, user))
    }

    /// The current context's cluster; without contexts (cluster-info has none), the first.
    fn cluster(&self) -> Option<&NamedCluster> {
        match self.current() {
            Some((cluster, _)) => Some(cluster),
            None if self.contexts.is_empty() => self.clusters.first(),
            None => None,
        }
    }

    /// The current context's server URL.
    pub fn server(&self) -> Option<&str> {
        self.cluster().map(|c| c.cluster.server.as_str())
    }

    /// The current context's CA certificate (PEM), when embedded.
    pub fn ca_pem(&self) -> Option<String> {
        decode(
            self.cluster()?
                .cluster
                .certificate_authority_data
                .as_deref()?,
        )
    }

    /// The current user's embedded client certificate and key (PEM), when there are both.
    pub fn client_credentials(&self) -> Option<(String, String)> {
        let (_, user) = self.current()?;
        let cert = decode(user.user.client_certificate_data.as_deref()?)?;
        let key = decode(user.user.client_key_data.as_deref()?)?;
        Some((cert, key))
    }

    /// Replaces the current user's embedded certificate and key, keeping everything else.
    pub fn set_client_credentials(&mut self, certificate_pem: &str, key_pem: &str) {
        let Some(user_name) = self.current().map(|(_, u)| u.name.clone()) else {
            return;
        };
        if let Some(user) = self.users.iter_mut().find(|u| u.name == user_name) {
            user.user.client_certificate_data = Some(BASE64.encode(certificate_pem));
            user.user.client_key_data = Some(BASE64.encode(key_pem));
        }
    }
}

fn decode(data: &str) -> Option<String> {
    String::from_utf8(BASE64.decode(data.trim()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_finds_credentials() {
        let config = Kubeconfig::new(
            "lab",
            "https://10.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            Credentials::Certificate {
                certificate_pem: "CERT",
                key_pem: "KEY",
            },
        );
        let text = config.to_yaml();
        assert!(
            text.contains("current-context: kubernetes-admin@lab"),
            "{text}"
        );
        let again = Kubeconfig::parse(&Source::new("admin.conf", text)).unwrap();
        assert_eq!(again, config);
        assert_eq!(again.server(), Some("https://10.0.0.1:6443"));
        assert_eq!(again.ca_pem().as_deref(), Some("CA"));
        assert_eq!(
            again.client_credentials(),
            Some(("CERT".into(), "KEY".into()))
        );
    }

    #[test]
    fn unknown_fields_survive_a_credential_swap() {
        let text = "\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://x:6443
    tls-server-name: api
contexts:
- name: u@c
  context: {cluster: c, user: u, namespace: dev}
current-context: u@c
users:
- name: u
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";
        let mut config = Kubeconfig::parse(&Source::new("k.conf", text)).unwrap();
        config.set_client_credentials("NEW", "KEY2");
        let out = config.to_yaml();
        assert!(
            out.contains("tls-server-name: api") && out.contains("namespace: dev"),
            "{out}"
        );
        assert_eq!(
            config.client_credentials(),
            Some(("NEW".into(), "KEY2".into()))
        );
    }

    /// cluster-info's kubeconfig, as kube-apiserver serves it: one cluster, no context, no user.
    #[test]
    fn a_kubeconfig_without_contexts_gives_its_cluster() {
        let text = "\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://172.30.0.11:6443
  name: \"\"
contexts: []
current-context: \"\"
preferences: {}
users: []
";
        let config = Kubeconfig::parse(&Source::new("cluster-info", text)).unwrap();
        assert_eq!(config.ca_pem().as_deref(), Some("CA"));
        assert_eq!(config.server(), Some("https://172.30.0.11:6443"));
    }
}
