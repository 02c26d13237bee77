//! Upgrades: `plan` lists the versions the bundles on this machine offer and checks them
//! against the version skew rules; `apply` takes a backup, then upgrades one node at a time,
//! control planes first: cordon and drain (evictions respect PodDisruptionBudgets), the
//! `upgrade` playbook limited to the node (each component restarted only when it changed and
//! health-gated), uncordon. Progress is recorded after every node, so `--resume` after a
//! failure or an interrupted run continues where it stopped, with the same backup.
//!
//! Cordon, drain and uncordon run kubectl (the bundle's, on the first control plane): the
//! eviction API kube-rs speaks (policy/v1) does not exist before Kubernetes v1.22, and v1.20
//! clusters are what the lab runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backup::{self, BackupError};
use super::cluster::{self, ClusterError, ClusterRun, Installed};
use super::{inventory, lock};
use crate::bundle;
use crate::config::{Cluster, KubernetesVersion, Role};
use crate::engine::events::EventSink;
use crate::engine::playbook;
use crate::engine::runner::{self, RunOptions, RunReport, Runner};
use crate::engine::templates::Templates;
use crate::engine::transport::{Session, Stdin};
use crate::state::{self, StateDir};

const KUBECTL: &str = "kubectl --kubeconfig=/etc/kubernetes/admin.conf";

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{0}")]
    Refused(String),
    #[error("{node}: {step}: {reason}")]
    Node {
        node: String,
        step: String,
        reason: String,
    },
}

/// A version a bundle offers, and whether the cluster may go there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub version: KubernetesVersion,
    pub bundle: PathBuf,
    /// Why not, when the skew rules refuse it.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub current: KubernetesVersion,
    /// Nodes and the kubelet versions they report.
    pub nodes: Vec<(String, String)>,
    pub candidates: Vec<Candidate>,
    /// What `apply` does, in order.
    pub steps: Vec<String>,
}

/// The skew rules (kubeadm's): no downgrade, one minor version at a time, same major.
pub fn check_skew(current: KubernetesVersion, target: KubernetesVersion) -> Result<(), String> {
    if target == current {
        return Err(format!("the cluster already runs {current}"));
    }
    if target < current {
        return Err(format!(
            "{target} is older than {current}: kinit does not downgrade"
        ));
    }
    if target.major != current.major {
        return Err(format!("{target} is another major version than {current}"));
    }
    if target.minor > current.minor + 1 {
        return Err(format!(
            "{target} skips a minor version: the control plane goes one minor version at a time ({current} → v{}.{}.x first)",
            current.major,
            current.minor + 1
        ));
    }
    Ok(())
}

/// The version the cluster runs: recorded by init and upgrades, else the configuration's.
pub fn current_version(cluster: &Cluster, state: &StateDir) -> KubernetesVersion {
    Installed::load(state)
        .version
        .unwrap_or(cluster.kubernetes_version)
}

/// Bundles in kinit's cache (and `extra`), by the version they carry.
pub fn available(extra: Option<&Path>) -> Vec<(KubernetesVersion, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state::cache_dir().join("bundles"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    files.extend(extra.map(Path::to_owned));
    let mut found: BTreeMap<KubernetesVersion, PathBuf> = BTreeMap::new();
    for file in files {
        if let Some(version) = bundle::read_manifest(&file)
            .ok()
            .and_then(|m| m.kubernetes_version.parse().ok())
        {
            found.insert(version, file);
        }
    }
    found.into_iter().collect()
}

/// The order `apply` upgrades nodes in: control planes (in configuration order), then the rest.
pub fn node_order(cluster: &Cluster) -> Vec<String> {
    let mut order: Vec<String> = cluster
        .control_planes()
        .map(|h| h.name.to_string())
        .collect();
    order.extend(
        cluster
            .hosts
            .iter()
            .filter(|h| !h.has_role(Role::ControlPlane))
            .map(|h| h.name.to_string()),
    );
    order
}

/// A session on the first control plane that answers, for kubectl.
/// A session on the first control plane that answers, other than `avoid` when others do.
pub(crate) async fn control_plane_session(
    cluster: &Cluster,
    run: &RunOptions,
    avoid: Option<&str>,
) -> Result<Session, UpgradeError> {
    let inventory = inventory::from_cluster(cluster, BTreeMap::new());
    let mut errors = Vec::new();
    for host in cluster
        .control_planes()
        .filter(|h| Some(h.name.as_str()) != avoid)
    {
        let host = inventory
            .host(host.name.as_str())
            .expect("mirrors the configuration");
        match runner::connect(host, &run.ssh, run.sudo_password.as_ref()).await {
            Ok((session, _, _)) => return Ok(session),
            Err(e) => errors.push(format!("{}: {e}", host.name)),
        }
    }
    // A single control plane drains itself.
    if let Some(avoid) = avoid
        && let Some(host) = inventory.host(avoid)
        && let Ok((session, _, _)) =
            runner::connect(host, &run.ssh, run.sudo_password.as_ref()).await
    {
        return Ok(session);
    }
    Err(UpgradeError::Refused(format!(
        "no control plane answers: {}",
        errors.join("; ")
    )))
}

pub async fn plan(
    cluster: &Cluster,
    state: &StateDir,
    run: &RunOptions,
    extra: Option<&Path>,
) -> Result<Plan, UpgradeError> {
    let current = current_version(cluster, state);
    let session = control_plane_session(cluster, run, None).await?;
    let output = session
        .exec(
            &format!(
                "{KUBECTL} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.status.nodeInfo.kubeletVersion}}{{\"\\n\"}}{{end}}'"
            ),
            Stdin::none(),
            true,
        )
        .await
        .map_err(|e| UpgradeError::Refused(format!("reading the nodes: {e}")))?;
    let nodes = output
        .stdout_text()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let candidates = available(extra)
        .into_iter()
        .filter(|(version, _)| *version != current)
        .map(|(version, bundle)| Candidate {
            version,
            bundle,
            refused: check_skew(current, version).err(),
        })
        .collect();
    let mut steps = vec![format!(
        "back up etcd (kinit backup create) into {}",
        backup::default_dir(state).display()
    )];
    for node in node_order(cluster) {
        let control_plane = cluster
            .host(&node)
            .is_some_and(|h| h.has_role(Role::ControlPlane));
        steps.push(format!(
            "{node}: cordon, drain, {}kubelet and kube-proxy, wait until Ready on the new version, uncordon",
            if control_plane {
                "etcd (if its binary changed), API server, controller manager, scheduler (each healthy before the next), "
            } else {
                ""
            }
        ));
    }
    Ok(Plan {
        current,
        nodes,
        candidates,
        steps,
    })
}

/// Progress of an upgrade, kept in the state directory for `--resume`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    target: Option<KubernetesVersion>,
    backup: Option<String>,
    done: Vec<String>,
}

fn progress_path(state: &StateDir) -> PathBuf {
    state.root().join("upgrade.json")
}

/// The target of an upgrade that stopped before every node was done (`apply --resume`
/// continues it), and the nodes it finished.
pub fn unfinished(state: &StateDir) -> Option<(KubernetesVersion, Vec<String>)> {
    let progress: Progress =
        serde_json::from_slice(&std::fs::read(progress_path(state)).ok()?).ok()?;
    Some((progress.target?, progress.done))
}

fn save_progress(state: &StateDir, progress: &Progress) -> Result<(), UpgradeError> {
    kinit_pki::write_atomic(
        &progress_path(state),
        &serde_json::to_vec_pretty(progress).expect("serialisable"),
        0o644,
    )
    .map_err(|e| UpgradeError::Refused(e.to_string()))
}

pub struct ApplyOptions {
    pub target: KubernetesVersion,
    pub bundle: Option<PathBuf>,
    pub drain_timeout: Duration,
    /// Where the backup taken first goes.
    pub backup_dir: PathBuf,
    /// Seal that backup with this key.
    pub backup_key: Option<super::sealed::Key>,
}

async fn kubectl(
    session: &Session,
    node: &str,
    step: &str,
    args: &str,
) -> Result<(), UpgradeError> {
    let output = session
        .exec(&format!("{KUBECTL} {args}"), Stdin::none(), true)
        .await
        .map_err(|e| UpgradeError::Node {
            node: node.into(),
            step: step.into(),
            reason: e.to_string(),
        })?;
    if !output.success() {
        return Err(UpgradeError::Node {
            node: node.into(),
            step: step.into(),
            reason: format!(
                "{}; the node stays cordoned: fix the cause, then `kinit upgrade apply --resume`",
                output.stderr_tail(4)
            ),
        });
    }
    Ok(())
}

/// Upgrades the cluster to `options.target`; returns the reports of the nodes' runs. The
/// first failed node stops the upgrade (the others keep serving, on either version).
pub async fn apply(
    cluster: &Cluster,
    options: ClusterRun,
    apply: ApplyOptions,
    sink: Arc<dyn EventSink>,
) -> Result<Vec<(String, RunReport)>, UpgradeError> {
    let target = apply.target;
    let _lock = lock::acquire(&options.state, &format!("upgrade apply {target}"))?;
    let state = &options.state;
    let resume = options.run.resume;
    let mut progress: Progress = std::fs::read(progress_path(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|p: &Progress| resume && p.target == Some(target))
        .unwrap_or_default();
    let current = current_version(cluster, state);
    if progress.done.is_empty() {
        check_skew(current, target).map_err(UpgradeError::Refused)?;
    }
    // The target's bundle and the template variables of the cluster at the target version.
    let (bundle_dir, manifest) = cluster::unpacked_bundle(apply.bundle.as_deref(), target)?;
    let mut upgraded = cluster.clone();
    upgraded.kubernetes_version = target;
    let pki_dir = state.kubernetes();
    let installed = Installed::load(state);
    let vars = cluster::variables(&upgraded, &pki_dir, &manifest, &installed)?;
    let (name, source) = options
        .assets
        .playbook("upgrade")
        .map_err(ClusterError::Setup)?;
    let playbook =
        playbook::parse(&name, &source).map_err(|e| ClusterError::Setup(e.to_string()))?;

    if progress.backup.is_none() {
        let info = backup::create_unlocked(
            cluster,
            state,
            &options.run,
            &backup::CreateOptions {
                dir: apply.backup_dir.clone(),
                keep_on_node: false,
                bundle: None,
                encryption: apply.backup_key.clone(),
            },
        )
        .await?;
        progress.target = Some(target);
        progress.backup = Some(info.name);
        save_progress(state, &progress)?;
    }

    let mut reports = Vec::new();
    for node in node_order(cluster) {
        if progress.done.contains(&node) {
            continue;
        }
        let session = control_plane_session(cluster, &options.run, Some(&node)).await?;
        let timeout = apply.drain_timeout.as_secs();
        kubectl(
            &session,
            &node,
            "drain",
            &format!(
                "drain {node} --ignore-daemonsets --delete-emptydir-data --timeout={timeout}s"
            ),
        )
        .await?;
        let inventory = cluster::run_inventory(&upgraded, &pki_dir, vars.clone(), &installed);
        let templates =
            Templates::load(&options.assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
        let mut run = options.run.clone();
        run.files = bundle_dir.clone();
        run.limit = Some(node.clone());
        run.journal = Some(
            state
                .root()
                .join("journal")
                .join(format!("upgrade-{node}.json")),
        );
        // The node's own run resumes only if it is the one that stopped.
        run.resume = resume && run.journal.as_ref().is_some_and(|j| j.exists());
        let runner = Runner::new(inventory, templates, run, sink.clone());
        let report = runner
            .run(&playbook)
            .await
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        let success = report.success();
        reports.push((node.clone(), report));
        if !success {
            return Ok(reports);
        }
        // The API may have moved (this node's API server restarted): a fresh session.
        let session = control_plane_session(cluster, &options.run, None).await?;
        kubectl(&session, &node, "uncordon", &format!("uncordon {node}")).await?;
        progress.done.push(node.clone());
        save_progress(state, &progress)?;
    }
    let mut installed = Installed::load(state);
    installed.version = Some(target);
    installed.save(state)?;
    let _ = std::fs::remove_file(progress_path(state));
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubernetesVersion {
        text.parse().unwrap()
    }

    #[test]
    fn skew_rules() {
        assert!(check_skew(v("v1.20.2"), v("v1.20.3")).is_ok());
        assert!(check_skew(v("v1.20.2"), v("v1.21.0")).is_ok());
        assert!(
            check_skew(v("v1.20.2"), v("v1.22.0"))
                .unwrap_err()
                .contains("v1.21.x first")
        );
        assert!(
            check_skew(v("v1.20.3"), v("v1.20.2"))
                .unwrap_err()
                .contains("does not downgrade")
        );
        assert!(
            check_skew(v("v1.20.2"), v("v1.20.2"))
                .unwrap_err()
                .contains("already runs")
        );
    }
}
