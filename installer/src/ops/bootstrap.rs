//! Joining by bootstrap token, as kubeadm does. On the cluster side: bootstrap tokens as
//! Secrets (`kinit token create|list|delete`), which the controller manager's bootstrap signer
//! uses to sign the `cluster-info` ConfigMap. On the joining side: discovery, which trusts the
//! cluster without copying its CA: fetch cluster-info without verifying TLS, check its JWS
//! signature with the token's secret, check the CA it carries against the pinned hash, then
//! fetch it again over TLS verified with that CA and compare.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use kinit_pki::{BootstrapToken, CertificateInfo};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::engine::probe::{self, TlsFiles, Url};
use crate::engine::transport::local::LocalTransport;
use crate::engine::transport::{Session, Stdin};
use crate::kubeconfig::Kubeconfig;
use crate::yaml::{self, Source};

/// The group joining kubelets authenticate as; the RBAC add-on lets it ask for a certificate.
pub const NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const KUBECTL: &str = "kubectl --kubeconfig=/etc/kubernetes/admin.conf";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Cluster(String),
    #[error("discovery: {0}")]
    Discovery(String),
}

/// A token as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub expires: Option<String>,
    pub usages: Vec<String>,
    pub description: String,
}

/// The Secret that makes `token` valid until `expires` (RFC 3339).
fn token_secret(token: &BootstrapToken, expires: &str, description: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{}", token.id()), "namespace": "kube-system"},
        "stringData": {
            "description": description,
            "token-id": token.id(),
            "token-secret": token.secret(),
            "expiration": expires,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": NODE_GROUP,
        },
    })
}

/// A new bootstrap token and the `kinit join` command that uses it: the API endpoint, the
/// token and the pin of the cluster CA read from the control plane `session` is on. The
/// command carries a secret: show it to the operator, never log it.
pub async fn join_command(
    session: &Session,
    endpoint: &str,
    ttl: Duration,
    description: &str,
) -> Result<String, BootstrapError> {
    let token = create_token(session, ttl, description).await?;
    let ca = session
        .exec("cat /etc/kubernetes/pki/ca.crt", Stdin::none(), true)
        .await
        .map_err(|e| BootstrapError::Cluster(format!("reading the cluster CA: {e}")))?;
    let ca = CertificateInfo::from_pem(&ca.stdout_text())
        .map_err(|e| BootstrapError::Cluster(format!("the cluster CA: {e}")))?;
    Ok(format!(
        "kinit join {endpoint} --token {} --discovery-token-ca-cert-hash {}",
        token.expose(),
        kinit_pki::pin::ca_pin(&ca)
    ))
}

/// [`join_command`] on the cluster's first control plane that answers over SSH.
pub async fn cluster_join_command(
    cluster: &crate::config::Cluster,
    run: &crate::engine::runner::RunOptions,
    ttl: Duration,
    description: &str,
) -> Result<String, BootstrapError> {
    let session = super::upgrade::control_plane_session(cluster, run, None)
        .await
        .map_err(|e| BootstrapError::Cluster(e.to_string()))?;
    let endpoint = crate::topology::external_api_url(cluster);
    join_command(
        &session,
        endpoint.trim_start_matches("https://"),
        ttl,
        description,
    )
    .await
}

/// Creates a bootstrap token valid for `ttl`, through kubectl on a control plane.
pub async fn create_token(
    session: &Session,
    ttl: Duration,
    description: &str,
) -> Result<BootstrapToken, BootstrapError> {
    let token = BootstrapToken::generate();
    let expires = (time::OffsetDateTime::now_utc() + ttl)
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let secret =
        serde_json::to_vec(&token_secret(&token, &expires, description)).expect("serialisable");
    // The secret travels on kubectl's standard input, never in arguments.
    let output = session
        .exec(
            &format!("{KUBECTL} create -f -"),
            Stdin::bytes(secret),
            true,
        )
        .await
        .map_err(|e| BootstrapError::Cluster(e.to_string()))?;
    if !output.success() {
        return Err(BootstrapError::Cluster(format!(
            "creating the token: {}",
            output.stderr_tail(3)
        )));
    }
    Ok(token)
}

pub async fn list_tokens(session: &Session) -> Result<Vec<TokenInfo>, BootstrapError> {
    let output = session
        .exec(
            &format!("{KUBECTL} get secrets -n kube-system --field-selector=type=bootstrap.kubernetes.io/token -o json"),
            Stdin::none(),
            true,
        )
        .await
        .map_err(|e| BootstrapError::Cluster(e.to_string()))?;
    if !output.success() {
        return Err(BootstrapError::Cluster(format!(
            "listing tokens: {}",
            output.stderr_tail(3)
        )));
    }
    let list: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| BootstrapError::Cluster(e.to_string()))?;
    let field = |data: &Value, key: &str| {
        data[key]
            .as_str()
            .and_then(|v| STANDARD.decode(v).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let data = &item["data"];
            TokenInfo {
                id: field(data, "token-id").unwrap_or_default(),
                expires: field(data, "expiration"),
                usages: ["authentication", "signing"]
                    .into_iter()
                    .filter(|u| {
                        field(data, &format!("usage-bootstrap-{u}")).as_deref() == Some("true")
                    })
                    .map(str::to_owned)
                    .collect(),
                description: field(data, "description").unwrap_or_default(),
            }
        })
        .collect())
}

pub async fn delete_token(session: &Session, id: &str) -> Result<(), BootstrapError> {
    if id.len() != 6
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(BootstrapError::Cluster(format!(
            "{id:?} is not a token id (6 characters of [a-z0-9])"
        )));
    }
    let output = session
        .exec(
            &format!("{KUBECTL} delete secret -n kube-system bootstrap-token-{id}"),
            Stdin::none(),
            true,
        )
        .await
        .map_err(|e| BootstrapError::Cluster(e.to_string()))?;
    if !output.success() {
        return Err(BootstrapError::Cluster(format!(
            "deleting token {id}: {}",
            output.stderr_tail(3)
        )));
    }
    Ok(())
}

/// What discovery learns: the cluster's CA and API server.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub ca_pem: String,
    pub server: String,
}

/// Checks a detached JWS (`header..signature`, HS256) over `payload` with the token's secret.
pub fn verify_detached_jws(jws: &str, payload: &str, token: &BootstrapToken) -> bool {
    let mut parts = jws.split('.');
    let (Some(header), Some(""), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(header_json) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let fields: Value = serde_json::from_slice(&header_json).unwrap_or_default();
    if fields["alg"] != "HS256" || fields["kid"].as_str().is_some_and(|kid| kid != token.id()) {
        return false;
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.secret().as_bytes()).expect("any key length");
    mac.update(format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload)).as_bytes());
    mac.verify_slice(&signature).is_ok()
}

async fn fetch_cluster_info(url: &Url, ca: Option<&std::path::Path>) -> Result<Value, String> {
    let tls = TlsFiles {
        ca,
        client_cert: None,
        client_key: None,
    };
    let (status, body) = probe::http_get(&LocalTransport, url, &tls, ca.is_none(), None).await?;
    if status != 200 {
        return Err(format!("cluster-info answered HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("cluster-info is not JSON: {e}"))
}

/// Discovers the cluster at `endpoint` (host:port), trusting it only if cluster-info is signed
/// with `token` and its CA matches one of `pins`. Retries every 5 s for up to `timeout` while
/// the signature is missing (the token may be new); a CA that does not match is final.
pub async fn discover(
    endpoint: &str,
    token: &BootstrapToken,
    pins: &[String],
    timeout: Duration,
) -> Result<Discovered, BootstrapError> {
    let url = Url::parse(&format!(
        "https://{endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info"
    ))
    .map_err(BootstrapError::Discovery)?;
    if pins.is_empty() || !pins.iter().all(|p| kinit_pki::pin::is_well_formed(p)) {
        return Err(BootstrapError::Discovery(
            "give the CA's pin with --discovery-token-ca-cert-hash sha256:<64 hex digits> (printed by `kinit init`, or `kinit certs ca-pin`)".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    let (kubeconfig_text, ca_pem) = loop {
        let attempt = async {
            let info = fetch_cluster_info(&url, None).await?;
            let kubeconfig = info["data"]["kubeconfig"].as_str().ok_or("cluster-info holds no kubeconfig")?.to_owned();
            let jws = info["data"][format!("jws-kubeconfig-{}", token.id())]
                .as_str()
                .ok_or_else(|| format!("cluster-info is not signed with token {} (unknown, expired, or not signed yet)", token.id()))?
                .to_owned();
            if !verify_detached_jws(&jws, &kubeconfig, token) {
                return Err(format!("cluster-info's signature for token {} does not verify: wrong token secret?", token.id()));
            }
            Ok::<String, String>(kubeconfig)
        }
        .await;
        match attempt {
            Ok(kubeconfig) => {
                let parsed = Kubeconfig::parse(&Source::new("cluster-info", kubeconfig.clone()))
                    .map_err(|e| {
                        BootstrapError::Discovery(format!("cluster-info's kubeconfig: {e}"))
                    })?;
                let ca_pem = parsed.ca_pem().ok_or_else(|| {
                    BootstrapError::Discovery("cluster-info's kubeconfig holds no CA".into())
                })?;
                break (kubeconfig, ca_pem);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(BootstrapError::Discovery(format!(
                    "{e} (gave up after {} s)",
                    timeout.as_secs()
                )));
            }
            Err(e) => {
                tracing::info!("discovery: {e}; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let ca = CertificateInfo::from_pem(&ca_pem)
        .map_err(|e| BootstrapError::Discovery(format!("the cluster's CA: {e}")))?;
    if !pins.iter().any(|pin| kinit_pki::pin::matches(pin, &ca)) {
        return Err(BootstrapError::Discovery(format!(
            "the cluster's CA is {}, which matches no --discovery-token-ca-cert-hash given; refusing to trust it",
            kinit_pki::pin::ca_pin(&ca)
        )));
    }
    // Now trusted: fetch again, verifying the server, and make sure it says the same.
    let ca_file =
        tempfile::NamedTempFile::new().map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    std::fs::write(ca_file.path(), &ca_pem)
        .map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    let verified = fetch_cluster_info(&url, Some(ca_file.path()))
        .await
        .map_err(BootstrapError::Discovery)?;
    if verified["data"]["kubeconfig"].as_str() != Some(kubeconfig_text.as_str()) {
        return Err(BootstrapError::Discovery(
            "cluster-info changed between the unverified and the verified fetch".into(),
        ));
    }
    let parsed = Kubeconfig::parse(&Source::new("cluster-info", kubeconfig_text))
        .map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    let server = parsed.server().unwrap_or_default().to_owned();
    Ok(Discovered {
        ca_pem,
        server: if server.is_empty() {
            format!("https://{endpoint}")
        } else {
            server
        },
    })
}

/// The cluster's settings a joining node needs (the `kinit-config` ConfigMap), read with the
/// token over TLS verified with the discovered CA.
pub async fn cluster_settings(
    discovered: &Discovered,
    endpoint: &str,
    token: &BootstrapToken,
) -> Result<Value, BootstrapError> {
    let url = Url::parse(&format!(
        "https://{endpoint}/api/v1/namespaces/kube-system/configmaps/kinit-config"
    ))
    .map_err(BootstrapError::Discovery)?;
    let ca_file =
        tempfile::NamedTempFile::new().map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    std::fs::write(ca_file.path(), &discovered.ca_pem)
        .map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    let tls = TlsFiles {
        ca: Some(ca_file.path()),
        client_cert: None,
        client_key: None,
    };
    let (status, body) = probe::http_get(&LocalTransport, &url, &tls, false, Some(&token.expose()))
        .await
        .map_err(BootstrapError::Discovery)?;
    if status != 200 {
        return Err(BootstrapError::Discovery(format!(
            "reading the cluster's settings (kube-system/kinit-config) answered HTTP {status}: was the cluster installed by kinit?"
        )));
    }
    let config: Value =
        serde_json::from_slice(&body).map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    Ok(config["data"].clone())
}

/// The kubeconfig a joining kubelet starts with: the discovered CA and the token.
pub fn bootstrap_kubeconfig(
    discovered: &Discovered,
    endpoint: &str,
    token: &BootstrapToken,
) -> String {
    let config = Kubeconfig::new(
        "kubernetes",
        &format!("https://{endpoint}"),
        &discovered.ca_pem,
        "tls-bootstrap-token-user",
        crate::kubeconfig::Credentials::Token(&token.expose()),
    );
    yaml::to_string(&config).expect("a kubeconfig serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(payload: &str, token: &BootstrapToken) -> String {
        let header =
            URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"HS256\",\"kid\":\"{}\"}}", token.id()));
        let mut mac = Hmac::<Sha256>::new_from_slice(token.secret().as_bytes()).unwrap();
        mac.update(format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload)).as_bytes());
        format!(
            "{header}..{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn detached_signatures() {
        let token = BootstrapToken::generate();
        let jws = sign("kubeconfig text", &token);
        assert!(verify_detached_jws(&jws, "kubeconfig text", &token));
        assert!(
            !verify_detached_jws(&jws, "kubeconfig text!", &token),
            "a changed payload"
        );
        assert!(
            !verify_detached_jws(&jws, "kubeconfig text", &BootstrapToken::generate()),
            "another token"
        );
        assert!(!verify_detached_jws("nonsense", "x", &token));
    }

    #[test]
    fn token_secrets_carry_kubeadm_fields() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        let secret = token_secret(&token, "2030-01-01T00:00:00Z", "for node2");
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(secret["stringData"]["auth-extra-groups"], NODE_GROUP);
        assert_eq!(secret["stringData"]["usage-bootstrap-signing"], "true");
    }
}
