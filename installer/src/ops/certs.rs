//! Certificate operations on a directory shaped like `/etc/kubernetes`: generate a cluster's
//! whole PKI and kubeconfigs, report expiry, renew. The CLI's `kinit certs …` and the console
//! call these.

use std::path::{Path, PathBuf};

use kinit_pki::{
    Action, AdminGroup, Authority, CertificateInfo, ClusterPki, Expiry, KeyAlgorithm,
    KubeconfigCredential, Member, Outcome, PkiDirectory, Placement, Settings, ensure_credential,
};
use time::{Duration, OffsetDateTime};

use crate::config::{self, Cluster};
use crate::kubeconfig::{Credentials, Kubeconfig, KubeconfigError};
use crate::topology;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(transparent)]
    Pki(#[from] kinit_pki::Error),
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("{0}")]
    Invalid(String),
}

/// The certificate facts of a cluster configuration.
pub fn cluster_pki(cluster: &Cluster) -> ClusterPki {
    let member = |h: &config::Host| Member {
        name: h.name.to_string(),
        address: h.address.0,
    };
    ClusterPki {
        dns_domain: cluster.networking.dns_domain.to_string(),
        kubernetes_service_ip: cluster
            .kubernetes_service_ip()
            .expect("validation guarantees room in the service network"),
        control_plane_endpoint: cluster
            .control_plane
            .endpoint
            .as_ref()
            .map(|e| e.host.clone()),
        extra_sans: cluster.control_plane.extra_sans.clone(),
        control_planes: cluster.control_planes().map(member).collect(),
        etcd_members: cluster.etcd_members().map(member).collect(),
        kubelets: cluster.hosts.iter().map(|h| h.name.to_string()).collect(),
        // kubeadm moved administrators out of system:masters in v1.29.
        admin_group: if cluster.kubernetes_version.at_least(1, 29) {
            AdminGroup::ClusterAdmins
        } else {
            AdminGroup::SystemMasters
        },
    }
}

pub fn settings(cluster: &Cluster) -> Settings {
    let certs = &cluster.certificates;
    Settings {
        key_algorithm: match certs.key_algorithm {
            config::KeyAlgorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            config::KeyAlgorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
        },
        ca_validity: Duration::days(i64::from(certs.ca_validity_days)),
        leaf_validity: Duration::days(i64::from(certs.validity_days)),
    }
}

/// The server a kubeconfig points at.
fn server_for(
    cluster: &Cluster,
    credential: &KubeconfigCredential,
    placement: &Placement,
) -> String {
    // The API server on the same host: on one node's own directory kubeadm uses the node's
    // advertised address; the operator's copy serves every control plane, so it uses loopback.
    let local = || match placement {
        Placement::Node(node) => cluster
            .host(node)
            .map(|h| {
                format!(
                    "https://{}:{}",
                    url_host(h.address.0),
                    topology::API_SERVER_PORT
                )
            })
            .unwrap_or_else(topology::local_api_url),
        Placement::Cluster => topology::local_api_url(),
    };
    match credential.name {
        "admin.conf" | "super-admin.conf" => topology::external_api_url(cluster),
        "kubelet.conf" => match credential.node.as_deref().and_then(|n| cluster.host(n)) {
            Some(host) if host.has_role(config::Role::ControlPlane) => local(),
            Some(host) => topology::node_api_url(cluster, host),
            None => topology::external_api_url(cluster),
        },
        _ => local(),
    }
}

fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// Brings `dir` in line with the cluster: authorities, leaves, service-account keys and
/// kubeconfigs. Valid files are kept byte for byte.
pub fn generate(
    cluster: &Cluster,
    dir: &Path,
    placement: &Placement,
    now: OffsetDateTime,
) -> Result<Vec<Outcome>, CertsError> {
    let pki_dir = PkiDirectory::new(dir);
    let settings = settings(cluster);
    let layout = cluster_pki(cluster).layout(placement);
    let (authorities, mut outcomes) = pki_dir.ensure_authorities(&settings, now)?;
    outcomes.extend(pki_dir.ensure_leaves(&authorities, &layout.leaves, &settings, now, false)?);
    outcomes.extend(pki_dir.ensure_service_account_key(&settings)?);
    let ca = authorities.get(kinit_pki::Signer::Ca);
    for credential in &layout.kubeconfigs {
        let server = server_for(cluster, credential, placement);
        outcomes.push(ensure_kubeconfig(
            dir,
            cluster.name(),
            &server,
            ca,
            credential,
            &settings,
            now,
        )?);
    }
    Ok(outcomes)
}

fn ensure_kubeconfig(
    dir: &Path,
    cluster_name: &str,
    server: &str,
    ca: &Authority,
    credential: &KubeconfigCredential,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Outcome, CertsError> {
    let path = dir.join(&credential.file);
    let existing = Kubeconfig::read(&path)?;
    let (cert, key) = existing
        .as_ref()
        .and_then(Kubeconfig::client_credentials)
        .map_or((None, None), |(c, k)| (Some(c), Some(k)));
    let issued = ensure_credential(
        ca,
        cert.as_deref(),
        key.as_deref(),
        &credential.spec,
        settings,
        now,
        false,
    )
    .map_err(|e| CertsError::Invalid(format!("{}: {e}", credential.file.display())))?;
    let mut action = issued.action.clone();
    if action == Action::Kept {
        let existing = existing.as_ref().expect("kept implies present");
        if existing.server() != Some(server) {
            action = Action::Reissued(format!(
                "server changed from {} to {server}",
                existing.server().unwrap_or("none")
            ));
        } else if existing.ca_pem().as_deref() != Some(ca.certificate_pem()) {
            action = Action::Reissued("the CA changed".into());
        } else {
            return Ok(Outcome {
                file: credential.file.clone(),
                action,
            });
        }
    }
    let config = Kubeconfig::new(
        cluster_name,
        server,
        ca.certificate_pem(),
        &credential.spec.common_name,
        Credentials::Certificate {
            certificate_pem: &issued.certificate_pem,
            key_pem: &issued.key_pem,
        },
    );
    kinit_pki::write_atomic(&path, config.to_yaml().as_bytes(), kinit_pki::KEY_MODE)?;
    Ok(Outcome {
        file: credential.file.clone(),
        action,
    })
}

/// The kubeconfigs at the top of `dir` that embed a client certificate, with kubeadm's name
/// for each (`kubelet-<node>.conf` is reported as `kubelet.conf` of that node).
fn kubeconfig_files(dir: &Path) -> Result<Vec<(String, Option<String>, PathBuf)>, CertsError> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(CertsError::Invalid(format!("{}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file_name.strip_suffix(".conf") else {
            continue;
        };
        let (name, node) = match stem.strip_prefix("kubelet-") {
            Some(node) => ("kubelet.conf".to_owned(), Some(node.to_owned())),
            None => (file_name.clone(), None),
        };
        found.push((name, node, PathBuf::from(&file_name)));
    }
    found.sort_by(|a, b| a.2.cmp(&b.2));
    Ok(found)
}

/// Expiry of every certificate in `dir`: authorities, leaves and kubeconfig credentials.
pub fn check_expiration(dir: &Path) -> Result<Expiry, CertsError> {
    let pki_dir = PkiDirectory::new(dir);
    let mut expiry = Expiry::scan(&pki_dir)?;
    for (name, node, file) in kubeconfig_files(dir)? {
        let Some(config) = Kubeconfig::read(&dir.join(&file))? else {
            continue;
        };
        // A rotated kubelet points at its certificate file instead of embedding one.
        let Some((cert, _)) = config.client_credentials() else {
            continue;
        };
        let info = CertificateInfo::from_pem(&cert)
            .map_err(|e| CertsError::Invalid(format!("{}: {e}", file.display())))?;
        expiry.add(name, node, file, &info);
    }
    expiry
        .certificates
        .sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
    Ok(expiry)
}

/// One certificate as found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    pub host: String,
    /// The file on the host.
    pub file: String,
    pub common_name: String,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
}

/// Prints `path<TAB>base64 of the PEM certificate` for every certificate kinit and the kubelet
/// keep on a host: `.crt` files, kubeconfigs' embedded client certificates, the kubelet's
/// rotated certificate (its certificate block only: keys never leave the host).
const CERTIFICATES_SCRIPT: &str = r#"
for f in $(find /etc/kubernetes/pki -name '*.crt' 2>/dev/null | sort); do
  printf '%s\t%s\n' "$f" "$(base64 -w0 < "$f")"
done
for f in /etc/kubernetes/*.conf; do
  [ -f "$f" ] || continue
  data=$(sed -n 's/^ *client-certificate-data: *//p' "$f" | head -1)
  [ -n "$data" ] && printf '%s\t%s\n' "$f" "$data"
done
f=/var/lib/kubelet/pki/kubelet-client-current.pem
if [ -f "$f" ]; then
  printf '%s\t%s\n' "$f" "$(sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "$f" | base64 -w0)"
fi
f=/var/lib/kubelet/pki/kubelet.crt
[ -f "$f" ] && printf '%s\t%s\n' "$f" "$(base64 -w0 < "$f")"
true
"#;

/// Expiry of the certificates in use on every host of the cluster, over SSH, soonest first;
/// hosts that cannot be read are returned with why.
pub async fn check_expiration_on_hosts(
    cluster: &Cluster,
    run: &crate::engine::runner::RunOptions,
) -> (Vec<HostCertificate>, Vec<(String, String)>) {
    use base64::Engine;
    let inventory = super::inventory::from_cluster(cluster, Default::default());
    let reads = inventory.hosts.iter().map(|host| async move {
        let result = async {
            let (session, _, _) =
                crate::engine::runner::connect(host, &run.ssh, run.sudo_password.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
            let output = session
                .exec(
                    CERTIFICATES_SCRIPT,
                    crate::engine::transport::Stdin::none(),
                    true,
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(output.stdout_text())
        }
        .await;
        (host.name.clone(), result)
    });
    let mut found = Vec::new();
    let mut unreachable = Vec::new();
    for (host, result) in futures::future::join_all(reads).await {
        let text = match result {
            Ok(text) => text,
            Err(e) => {
                unreachable.push((host, e));
                continue;
            }
        };
        for line in text.lines() {
            let Some((file, data)) = line.split_once('\t') else {
                continue;
            };
            let Some(pem) = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                continue;
            };
            if let Ok(info) = CertificateInfo::from_pem(&pem) {
                found.push(HostCertificate {
                    host: host.clone(),
                    file: file.to_owned(),
                    common_name: info.common_name.clone(),
                    not_after: info.not_after,
                    is_ca: info.is_ca,
                });
            }
        }
    }
    found.sort_by(|a, b| (a.not_after, &a.host, &a.file).cmp(&(b.not_after, &b.host, &b.file)));
    (found, unreachable)
}

/// Which certificates `renew` reissues: kubeadm names (`apiserver`, `admin.conf`, …), or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Names(Vec<String>),
}

impl Selection {
    fn accepts(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

/// The names `renew` accepts, as kubeadm spells them.
pub const RENEWABLE: &[&str] = &[
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "kubelet.conf",
    "scheduler.conf",
    "super-admin.conf",
];

/// Reissues the selected certificates with their existing keys and contents and a fresh
/// validity; authorities are never touched.
pub fn renew(
    dir: &Path,
    selection: &Selection,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Vec<Outcome>, CertsError> {
    if let Selection::Names(names) = selection
        && let Some(unknown) = names.iter().find(|n| !RENEWABLE.contains(&n.as_str()))
    {
        return Err(CertsError::Invalid(format!(
            "{unknown:?} is not a certificate name; use one of: {}, or all",
            RENEWABLE.join(", ")
        )));
    }
    let pki_dir = PkiDirectory::new(dir);
    let authorities = pki_dir.load_authorities()?;
    let mut outcomes = pki_dir.renew_leaves(
        &authorities,
        |leaf| selection.accepts(&leaf.name),
        settings,
        now,
    )?;
    let ca = authorities.get(kinit_pki::Signer::Ca);
    for (name, _, file) in kubeconfig_files(dir)? {
        if !selection.accepts(&name) {
            continue;
        }
        let path = dir.join(&file);
        let Some(mut config) = Kubeconfig::read(&path)? else {
            continue;
        };
        let Some((cert, key)) = config.client_credentials() else {
            continue;
        };
        let info = CertificateInfo::from_pem(&cert)
            .map_err(|e| CertsError::Invalid(format!("{}: {e}", file.display())))?;
        let issued = ensure_credential(
            ca,
            Some(&cert),
            Some(&key),
            &info.as_spec(),
            settings,
            now,
            true,
        )
        .map_err(|e| CertsError::Invalid(format!("{}: {e}", file.display())))?;
        config.set_client_credentials(&issued.certificate_pem, &issued.key_pem);
        kinit_pki::write_atomic(&path, config.to_yaml().as_bytes(), kinit_pki::KEY_MODE)?;
        outcomes.push(Outcome {
            file,
            action: issued.action,
        });
    }
    Ok(outcomes)
}

/// kubeadm's short durations: `364d`, `9y`, `23h`.
pub fn residual(not_after: OffsetDateTime, now: OffsetDateTime) -> String {
    let left = not_after - now;
    let seconds = left.whole_seconds();
    if seconds < 0 {
        "expired".into()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if left.whole_minutes() < 60 {
        format!("{}m", left.whole_minutes())
    } else if left.whole_hours() < 24 {
        format!("{}h", left.whole_hours())
    } else if left.whole_hours() < 24 * 365 {
        format!("{}d", left.whole_hours() / 24)
    } else {
        format!("{}y", left.whole_hours() / 24 / 365)
    }
}

/// Renews the selected certificates and kubeconfigs in the cluster's state directory and puts
/// them on the running cluster: control planes one at a time, each component restarted and
/// healthy before the next (etcd, the API server, controller manager and scheduler, kubelet
/// and kube-proxy); workers' kubelets when their kubeconfig changed. CAs and keys stay.
pub async fn renew_on_cluster(
    cluster: &Cluster,
    options: super::cluster::ClusterRun,
    selection: &Selection,
    sink: std::sync::Arc<dyn crate::engine::events::EventSink>,
) -> Result<(Vec<Outcome>, crate::engine::runner::RunReport), super::cluster::ClusterError> {
    use super::cluster::ClusterError;
    let _lock = super::lock::acquire(&options.state, "certs renew")
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let pki_dir = options.state.kubernetes();
    // A resumed run distributes what the interrupted one renewed.
    let outcomes = if options.run.dry_run || options.run.resume {
        Vec::new()
    } else {
        renew(
            &pki_dir,
            selection,
            &settings(cluster),
            OffsetDateTime::now_utc(),
        )?
    };
    let mut vars = std::collections::BTreeMap::new();
    vars.insert("pki".into(), serde_json::json!(pki_dir));
    let inventory = super::cluster::run_inventory(
        cluster,
        &pki_dir,
        vars,
        &super::cluster::Installed::load(&options.state),
    );
    let report =
        super::cluster::run_playbook(&options.assets, "certs-renew", inventory, options.run, sink)
            .await?;
    Ok((outcomes, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_like_kubeadm() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            residual(now + Duration::days(364) + Duration::hours(1), now),
            "364d"
        );
        assert_eq!(residual(now + Duration::days(3650), now), "10y");
        assert_eq!(residual(now + Duration::hours(5), now), "5h");
        assert_eq!(residual(now - Duration::hours(5), now), "expired");
    }
}
