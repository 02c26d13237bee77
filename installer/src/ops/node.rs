//! Removing a node: out of Kubernetes and etcd first, from a control plane that stays, then
//! the host itself reset. Adding nodes is `join`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::cluster::{self, ClusterError, ClusterRun};
use super::{inventory, lock};
use crate::config::{Cluster, Role};
use crate::engine::events::EventSink;
use crate::engine::runner::RunReport;

pub struct RemoveOptions {
    /// How long evictions may wait for PodDisruptionBudgets.
    pub drain_timeout: Duration,
    /// Take the node out of the cluster even when its host cannot be reset (it is gone).
    pub skip_reset: bool,
}

/// Drains `node`, deletes its Node object and, for a control plane, its etcd member; then
/// resets the host. Returns the cluster side's report and the host's.
pub async fn remove(
    cluster: &Cluster,
    options: ClusterRun,
    node: &str,
    remove: RemoveOptions,
    sink: Arc<dyn EventSink>,
) -> Result<(RunReport, Option<RunReport>), ClusterError> {
    let _lock = lock::acquire(&options.state, &format!("node remove {node}"))
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let host = cluster.host(node).ok_or_else(|| {
        ClusterError::Setup(format!("{node}: no host of that name in the configuration"))
    })?;
    let control_plane = host.has_role(Role::ControlPlane);
    let remover = cluster
        .control_planes()
        .find(|h| h.name.as_str() != node)
        .ok_or_else(|| {
            ClusterError::Setup(format!(
                "{node} is the cluster's only control plane: removing it removes the cluster (`kinit reset`)"
            ))
        })?
        .name
        .to_string();
    if control_plane && cluster.etcd_members().count() == 2 {
        tracing::warn!(
            "{node} leaves one etcd member: the cluster keeps working but tolerates no further loss"
        );
    }
    let mut vars = BTreeMap::new();
    vars.insert(
        "remove".into(),
        json!({
            "node": node,
            "address": host.address.to_string(),
            "control_plane": control_plane,
            "drain_timeout": remove.drain_timeout.as_secs(),
        }),
    );
    let mut inventory = inventory::from_cluster(cluster, vars);
    for host in &mut inventory.hosts {
        if host.name == remover {
            host.groups.push("remover".into());
        }
    }
    let mut run = options.run.clone();
    run.limit = Some(remover);
    run.journal = run.journal.map(|j| j.with_file_name("node-remove.json"));
    let report =
        cluster::run_playbook(&options.assets, "node-remove", inventory, run, sink.clone()).await?;
    if !report.success() || remove.skip_reset || options.run.dry_run {
        return Ok((report, None));
    }
    let reset = cluster::reset_unlocked(cluster, options, Some(node), sink).await?;
    Ok((report, Some(reset)))
}
