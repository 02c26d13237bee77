//! etcd backups: a snapshot streamed from a healthy member's gRPC API to the operator's backup
//! directory and checked there (etcd's trailing sha256 on the way, `etcdctl snapshot status`), with
//! the cluster's PKI and kubeconfigs beside it; listing, verification, retention, and restore
//! on every member.
//!
//! A backup is a directory `<backups>/<name>/` holding `etcd.db`, `pki.tar` (the state
//! directory's `kubernetes/`: what a restore needs besides etcd) and `backup.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cluster::{self, ClusterError, ClusterRun};
use super::{etcd_snapshot, inventory, lock, sealed};
use crate::config::Cluster;
use crate::engine::events::EventSink;
use crate::engine::probe::TlsFiles;
use crate::engine::runner::{self, RunOptions, RunReport};
use crate::engine::transport::Stdin;
use crate::state::StateDir;

/// etcdctl against the member on this node, with the health-check client certificate.
const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";
/// Where snapshots are taken on the node (and kept, with `keep_on_node`).
const NODE_DIR: &str = "/var/lib/kinit/backups";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Failed(String),
    /// The backup cannot be trusted: nothing was changed because of it.
    #[error("backup {name}: {reason}")]
    Invalid { name: String, reason: String },
}

fn failed(what: impl std::fmt::Display, e: impl std::fmt::Display) -> BackupError {
    BackupError::Failed(format!("{what}: {e}"))
}

/// What `backup.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    pub name: String,
    pub cluster: String,
    pub kubernetes_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: i64,
    /// The member the snapshot was taken from.
    pub member: String,
    pub size: u64,
    pub sha256: String,
    /// etcd's revision and key count at the snapshot, and its own hash of the database.
    pub revision: i64,
    pub total_keys: i64,
    pub etcd_hash: u64,
    pub pki_sha256: String,
    /// The files are sealed (`etcd.db.enc`, `pki.tar.enc`); sizes and checksums are of the
    /// files in clear.
    #[serde(default)]
    pub encrypted: bool,
    /// Where the node keeps its copy, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_copy: Option<String>,
}

/// `etcdctl snapshot status -w json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotStatus {
    hash: u64,
    revision: i64,
    total_key: i64,
}

/// A size as people read it: KiB, MiB or GiB.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", bytes as f64 / 1_073_741_824.0),
    }
}

/// Where backups go by default: `backups/` in the cluster's state directory.
pub fn default_dir(state: &StateDir) -> PathBuf {
    state.root().join("backups")
}

/// The local etcdctl, from the cluster's bundle: it reads snapshots on the operator's machine.
fn local_etcdctl(cluster: &Cluster, bundle: Option<&Path>) -> Result<PathBuf, BackupError> {
    let (dir, _) = cluster::unpacked_bundle(bundle, cluster.kubernetes_version)?;
    Ok(dir.join("bin/etcdctl"))
}

fn snapshot_status(etcdctl: &Path, file: &Path) -> Result<SnapshotStatus, String> {
    let output = std::process::Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .map_err(|e| format!("{}: {e}", etcdctl.display()))?;
    if !output.status.success() {
        return Err(format!(
            "etcdctl snapshot status: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("etcdctl snapshot status: {e}"))
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut file = std::fs::File::open(path).map_err(|e| failed(path.display(), e))?;
    let mut hash = Sha256::new();
    let size = std::io::copy(&mut file, &mut hash).map_err(|e| failed(path.display(), e))?;
    Ok((hex::encode(hash.finalize()), size))
}

/// The PKI and kubeconfigs of the state directory as a tar (0600: it holds the CA keys).
fn archive_pki(state: &StateDir, dest: &Path) -> Result<String, BackupError> {
    let source = state.kubernetes();
    let partial = dest.with_extension("partial");
    {
        let file = sealed::create_private(&partial).map_err(|e| failed(partial.display(), e))?;
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all("kubernetes", &source)
            .map_err(|e| failed(source.display(), e))?;
        tar.into_inner()
            .and_then(|f| f.sync_all())
            .map_err(|e| failed(partial.display(), e))?;
    }
    std::fs::rename(&partial, dest).map_err(|e| failed(dest.display(), e))?;
    Ok(sha256_file(dest)?.0)
}

pub struct CreateOptions {
    pub dir: PathBuf,
    /// Keep the snapshot on the node too (in /var/lib/kinit/backups).
    pub keep_on_node: bool,
    pub bundle: Option<PathBuf>,
    /// Seal the backup's files with this key.
    pub encryption: Option<sealed::Key>,
}

/// Takes a backup: a snapshot from the first healthy control plane, streamed here.
pub async fn create(
    cluster: &Cluster,
    state: &StateDir,
    run: &RunOptions,
    options: &CreateOptions,
) -> Result<BackupInfo, BackupError> {
    let _lock = lock::acquire(state, "backup create")?;
    create_unlocked(cluster, state, run, options).await
}

/// [`create`] for operations that hold the cluster's lock already (an upgrade's backup).
pub(crate) async fn create_unlocked(
    cluster: &Cluster,
    state: &StateDir,
    run: &RunOptions,
    options: &CreateOptions,
) -> Result<BackupInfo, BackupError> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .expect("formattable");
    let name = format!("{}-{stamp}", cluster.name());
    let etcdctl = local_etcdctl(cluster, options.bundle.as_deref())?;

    // The first member that answers healthy.
    let inventory = inventory::from_cluster(cluster, BTreeMap::new());
    let mut unhealthy = Vec::new();
    let mut chosen = None;
    for member in cluster.etcd_members() {
        let host = inventory
            .host(member.name.as_str())
            .expect("the inventory mirrors the configuration");
        match runner::connect(host, &run.ssh, run.sudo_password.as_ref()).await {
            Ok((session, _, _)) => {
                let health = session
                    .exec(&format!("{ETCDCTL} endpoint health"), Stdin::none(), true)
                    .await;
                match health {
                    Ok(output) if output.success() => {
                        chosen = Some((member.name.to_string(), session));
                        break;
                    }
                    Ok(output) => {
                        unhealthy.push(format!("{}: {}", member.name, output.stderr_tail(2)))
                    }
                    Err(e) => unhealthy.push(format!("{}: {e}", member.name)),
                }
            }
            Err(e) => unhealthy.push(format!("{}: {e}", member.name)),
        }
    }
    let (member, session) = chosen.ok_or_else(|| {
        BackupError::Failed(format!(
            "no healthy etcd member to take a snapshot from ({})",
            unhealthy.join("; ")
        ))
    })?;

    // Streamed from etcd into a partial file, hashed and checked on the way; renamed once
    // etcd itself has read it back.
    let backup_dir = options.dir.join(&name);
    std::fs::create_dir_all(&backup_dir).map_err(|e| failed(backup_dir.display(), e))?;
    let db = backup_dir.join("etcd.db");
    let partial = backup_dir.join("etcd.db.partial");
    let file = sealed::create_private(&partial).map_err(|e| failed(partial.display(), e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let pki = state.kubernetes().join("pki/etcd");
    let (ca, client_cert, client_key) = (
        pki.join("ca.crt"),
        pki.join("healthcheck-client.crt"),
        pki.join("healthcheck-client.key"),
    );
    let tls = TlsFiles {
        ca: Some(&ca),
        client_cert: Some(&client_cert),
        client_key: Some(&client_key),
    };
    let streamed = etcd_snapshot::stream(session.transport().as_ref(), &tls, &mut writer).await;
    let written = streamed.and_then(|snapshot| {
        writer
            .into_inner()
            .map_err(|e| e.error().to_string())?
            .sync_all()
            .map_err(|e| e.to_string())?;
        Ok(snapshot)
    });
    let snapshot = match written {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(failed(
                format!("host {member}, streaming etcd's snapshot"),
                e,
            ));
        }
    };
    let status = snapshot_status(&etcdctl, &partial).map_err(|e| BackupError::Invalid {
        name: name.clone(),
        reason: e,
    })?;
    std::fs::rename(&partial, &db).map_err(|e| failed(db.display(), e))?;
    let node_copy = if options.keep_on_node {
        let remote = format!("{NODE_DIR}/{name}.db");
        let kept = session
            .exec(
                &format!(
                    "mkdir -p {NODE_DIR} && chmod 700 {NODE_DIR} && umask 077 && cat > {remote}.partial && mv {remote}.partial {remote}"
                ),
                Stdin::file(db.clone()),
                true,
            )
            .await
            .map_err(|e| failed(format!("host {member}, keeping a copy"), e))?;
        if !kept.success() {
            return Err(failed(
                format!("host {member}, writing {remote}"),
                kept.stderr_tail(2),
            ));
        }
        Some(remote)
    } else {
        None
    };
    let pki_sha256 = archive_pki(state, &backup_dir.join("pki.tar"))?;
    if let Some(key) = &options.encryption {
        for file in ["etcd.db", "pki.tar"] {
            let clear = backup_dir.join(file);
            sealed::seal_file(key, &clear, &backup_dir.join(format!("{file}.enc")))
                .map_err(|e| failed("sealing the backup", e))?;
            std::fs::remove_file(&clear).map_err(|e| failed(clear.display(), e))?;
        }
    }
    let info = BackupInfo {
        name,
        cluster: cluster.name().to_owned(),
        kubernetes_version: cluster.kubernetes_version.to_string(),
        created: now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formattable"),
        created_unix: now.unix_timestamp(),
        member,
        size: snapshot.size,
        sha256: snapshot.sha256,
        revision: status.revision,
        total_keys: status.total_key,
        etcd_hash: status.hash,
        pki_sha256,
        encrypted: options.encryption.is_some(),
        node_copy,
    };
    kinit_pki::write_atomic(
        &backup_dir.join("backup.json"),
        &serde_json::to_vec_pretty(&info).expect("serialisable"),
        0o600,
    )
    .map_err(|e| failed(backup_dir.display(), e))?;
    Ok(info)
}

/// Every backup in `dir`, oldest first. Directories without a readable `backup.json` (an
/// interrupted backup) are skipped.
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(dir.display(), e)),
    };
    let mut backups: Vec<BackupInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("backup.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    backups.sort_by(|a, b| (a.created_unix, &a.name).cmp(&(b.created_unix, &b.name)));
    Ok(backups)
}

/// The backup named `name`, or the latest with `None`.
pub fn find(dir: &Path, name: Option<&str>) -> Result<BackupInfo, BackupError> {
    let backups = list(dir)?;
    match name {
        Some(name) => backups.into_iter().find(|b| b.name == name).ok_or_else(|| {
            BackupError::Failed(format!(
                "no backup named {name} in {} (`kinit backup list` shows them)",
                dir.display()
            ))
        }),
        None => backups.into_iter().last().ok_or_else(|| {
            BackupError::Failed(format!(
                "no backups in {} yet (`kinit backup create` takes one)",
                dir.display()
            ))
        }),
    }
}

/// A backup's files in clear: the files themselves, or for an encrypted backup opened copies,
/// removed when this is dropped.
#[derive(Debug)]
pub struct Opened {
    pub snapshot: PathBuf,
    pub pki: PathBuf,
    temporary: bool,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.snapshot);
            let _ = std::fs::remove_file(&self.pki);
        }
    }
}

/// Opens an encrypted backup's files (or names a plain backup's).
fn open_backup(
    dir: &Path,
    info: &BackupInfo,
    key: Option<&sealed::Key>,
) -> Result<Opened, BackupError> {
    let here = dir.join(&info.name);
    if !info.encrypted {
        return Ok(Opened {
            snapshot: here.join("etcd.db"),
            pki: here.join("pki.tar"),
            temporary: false,
        });
    }
    let key = key.ok_or_else(|| BackupError::Invalid {
        name: info.name.clone(),
        reason:
            "it is encrypted: give its key with --encryption-key-file (or KINIT_BACKUP_KEY_FILE)"
                .into(),
    })?;
    let opened = Opened {
        snapshot: here.join("etcd.db.opened"),
        pki: here.join("pki.tar.opened"),
        temporary: true,
    };
    for (sealed_file, clear) in [
        (here.join("etcd.db.enc"), &opened.snapshot),
        (here.join("pki.tar.enc"), &opened.pki),
    ] {
        sealed::open_file(key, &sealed_file, clear).map_err(|reason| BackupError::Invalid {
            name: info.name.clone(),
            reason,
        })?;
    }
    Ok(opened)
}

/// Checks a backup against its record: sizes, checksums, and etcd's own reading of the
/// snapshot (its hash and revision). Returns its files in clear.
pub fn verify_files(
    dir: &Path,
    info: &BackupInfo,
    etcdctl: &Path,
    key: Option<&sealed::Key>,
) -> Result<Opened, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        name: info.name.clone(),
        reason,
    };
    let opened = open_backup(dir, info, key)?;
    let db = opened.snapshot.clone();
    let (sha256, size) = sha256_file(&db)?;
    if size != info.size {
        return Err(invalid(format!(
            "etcd.db has {size} bytes, the backup recorded {}: the file is truncated or replaced",
            info.size
        )));
    }
    if sha256 != info.sha256 {
        return Err(invalid(format!(
            "etcd.db's sha256 is {sha256}, the backup recorded {}: the file is damaged",
            info.sha256
        )));
    }
    let status = snapshot_status(etcdctl, &db).map_err(invalid)?;
    if (status.hash, status.revision) != (info.etcd_hash, info.revision) {
        return Err(invalid(format!(
            "etcd reads hash {} at revision {}, the backup recorded {} at {}",
            status.hash, status.revision, info.etcd_hash, info.revision
        )));
    }
    let (pki, _) = sha256_file(&opened.pki)?;
    if pki != info.pki_sha256 {
        return Err(invalid(format!(
            "pki.tar's sha256 is {pki}, the backup recorded {}",
            info.pki_sha256
        )));
    }
    Ok(opened)
}

pub fn verify(
    cluster: &Cluster,
    dir: &Path,
    name: Option<&str>,
    bundle: Option<&Path>,
    key: Option<&sealed::Key>,
) -> Result<BackupInfo, BackupError> {
    let info = find(dir, name)?;
    verify_files(dir, &info, &local_etcdctl(cluster, bundle)?, key)?;
    Ok(info)
}

/// Which backups to keep: the newest `keep_last`, and those younger than `keep_days`; a
/// backup either rule keeps stays. With no rule, everything stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub keep_last: Option<usize>,
    pub keep_days: Option<u32>,
}

/// The backups `retention` removes, of `backups` (oldest first), at `now`.
pub fn expired(backups: &[BackupInfo], retention: Retention, now: i64) -> Vec<&BackupInfo> {
    if retention.keep_last.is_none() && retention.keep_days.is_none() {
        return Vec::new();
    }
    let newest_kept = backups
        .len()
        .saturating_sub(retention.keep_last.unwrap_or(0));
    backups
        .iter()
        .enumerate()
        .filter(|(index, backup)| {
            let kept_by_count = retention.keep_last.is_some() && *index >= newest_kept;
            let kept_by_age = retention
                .keep_days
                .is_some_and(|days| now - backup.created_unix < i64::from(days) * 86_400);
            !kept_by_count && !kept_by_age
        })
        .map(|(_, backup)| backup)
        .collect()
}

/// Applies `retention` to the backups in `dir`; returns the names removed.
pub fn prune(
    state: &StateDir,
    dir: &Path,
    retention: Retention,
    dry_run: bool,
) -> Result<Vec<String>, BackupError> {
    let _lock = lock::acquire(state, "backup prune")?;
    let backups = list(dir)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut removed = Vec::new();
    for backup in expired(&backups, retention, now) {
        if !dry_run {
            std::fs::remove_dir_all(dir.join(&backup.name))
                .map_err(|e| failed(dir.join(&backup.name).display(), e))?;
        }
        removed.push(backup.name.clone());
    }
    Ok(removed)
}

/// Restores the cluster's etcd from a backup: checked first (nothing changes when it is
/// damaged or from another cluster), then the API servers stop, every member is restored
/// from the snapshot with a new cluster token (its old data moved aside), etcd starts, then
/// the control plane, each step health-checked. `--resume` continues a failed restore.
pub async fn restore(
    cluster: &Cluster,
    options: ClusterRun,
    dir: &Path,
    name: Option<&str>,
    key: Option<&sealed::Key>,
    sink: Arc<dyn EventSink>,
) -> Result<(BackupInfo, RunReport), BackupError> {
    let _lock = lock::acquire(&options.state, "backup restore")?;
    let info = find(dir, name)?;
    if info.cluster != cluster.name() {
        return Err(BackupError::Invalid {
            name: info.name.clone(),
            reason: format!(
                "it is a backup of cluster {}, not of {}",
                info.cluster,
                cluster.name()
            ),
        });
    }
    // Kept until the restore is over: for an encrypted backup, the opened copy is what goes
    // to the members.
    let opened = verify_files(
        dir,
        &info,
        &local_etcdctl(cluster, options.bundle.as_deref())?,
        key,
    )?;
    let snapshot = std::fs::canonicalize(&opened.snapshot).map_err(|e| failed(dir.display(), e))?;
    let initial_cluster = cluster
        .etcd_members()
        .map(|m| format!("{}=https://{}:2380", m.name, m.address))
        .collect::<Vec<_>>()
        .join(",");
    // This restore's id names the data it moves aside; a resumed restore keeps it, so its
    // finished steps stay finished, while a new restore of the same backup starts afresh.
    let record = options.state.root().join("restore.json");
    let previous: Option<Value> = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let id = match previous {
        Some(previous) if options.run.resume && previous["name"] == info.name.as_str() => {
            previous["id"].as_str().unwrap_or_default().to_owned()
        }
        _ => format!(
            "{}-{}",
            info.name,
            time::OffsetDateTime::now_utc().unix_timestamp()
        ),
    };
    let restore = json!({
        "name": info.name,
        "id": id,
        "snapshot": snapshot,
        "initial_cluster": initial_cluster,
        "token": format!("kinit-{}-{id}", cluster.name()),
    });
    kinit_pki::write_atomic(
        &record,
        &serde_json::to_vec_pretty(&restore).expect("serialisable"),
        0o600,
    )
    .map_err(|e| failed(record.display(), e))?;
    let mut vars = BTreeMap::new();
    vars.insert("restore".into(), restore);
    vars.insert("pki".into(), json!(options.state.kubernetes()));
    let inventory = inventory::from_cluster(cluster, vars);
    let dry_run = options.run.dry_run;
    let report =
        cluster::run_playbook(&options.assets, "restore", inventory, options.run, sink).await?;
    if report.success() && !dry_run {
        let _ = std::fs::remove_file(&record);
    }
    drop(opened);
    Ok((info, report))
}

/// Scheduled backups: a cron expression and what to keep, on the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub cron: String,
    pub retention: Retention,
}

/// The schedule last installed, as `schedule.json` in the state directory records it.
pub fn current_schedule(state: &StateDir) -> Option<Schedule> {
    serde_json::from_slice(&std::fs::read(state.root().join("schedule.json")).ok()?).ok()
}

/// Installs `schedule` on every etcd member (a systemd timer running a snapshot with
/// retention on the node), or removes it with `None`. Backups already taken stay.
pub async fn schedule(
    cluster: &Cluster,
    options: ClusterRun,
    schedule: Option<&Schedule>,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, BackupError> {
    let _lock = lock::acquire(&options.state, "backup schedule")?;
    let vars_schedule = match schedule {
        Some(schedule) => {
            let on_calendar = super::schedule::on_calendar(&schedule.cron)
                .map_err(|e| BackupError::Failed(format!("--cron {:?}: {e}", schedule.cron)))?;
            json!({
                "enabled": true,
                "cron": schedule.cron,
                "on_calendar": on_calendar,
                "keep_last": schedule.retention.keep_last,
                "keep_days": schedule.retention.keep_days,
            })
        }
        None => json!({"enabled": false}),
    };
    let mut vars = BTreeMap::new();
    vars.insert("schedule".into(), vars_schedule);
    let inventory = inventory::from_cluster(cluster, vars);
    let dry_run = options.run.dry_run;
    let report = cluster::run_playbook(
        &options.assets,
        "backup-schedule",
        inventory,
        options.run,
        sink,
    )
    .await?;
    if report.success() && !dry_run {
        let record = options.state.root().join("schedule.json");
        match schedule {
            Some(schedule) => kinit_pki::write_atomic(
                &record,
                &serde_json::to_vec_pretty(schedule).expect("serialisable"),
                0o644,
            )
            .map_err(|e| failed(record.display(), e))?,
            None => {
                let _ = std::fs::remove_file(&record);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str, created_unix: i64) -> BackupInfo {
        BackupInfo {
            name: name.into(),
            cluster: "c".into(),
            kubernetes_version: "v1.20.2".into(),
            created: String::new(),
            created_unix,
            member: "node1".into(),
            size: 1,
            sha256: String::new(),
            revision: 1,
            total_keys: 1,
            etcd_hash: 1,
            pki_sha256: String::new(),
            encrypted: false,
            node_copy: None,
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let day = 86_400;
        let now = 100 * day;
        let backups: Vec<_> = (0..6)
            .map(|i| backup(&format!("b{i}"), now - (6 - i) * day))
            .collect();
        let names = |retention| {
            expired(&backups, retention, now)
                .iter()
                .map(|b| b.name.clone())
                .collect::<Vec<_>>()
        };
        assert!(names(Retention::default()).is_empty(), "no rule keeps all");
        assert_eq!(
            names(Retention {
                keep_last: Some(2),
                keep_days: None
            }),
            ["b0", "b1", "b2", "b3"]
        );
        // b3 is 3 days old, b4 2 days: younger than 3 days are b4 and b5.
        assert_eq!(
            names(Retention {
                keep_last: None,
                keep_days: Some(3)
            }),
            ["b0", "b1", "b2", "b3"]
        );
        assert_eq!(
            names(Retention {
                keep_last: Some(1),
                keep_days: Some(4)
            }),
            ["b0", "b1", "b2"]
        );
    }

    #[test]
    fn a_damaged_backup_is_named_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        let mut info = backup("b", 0);
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/etcd.db"), b"snapshot bytes").unwrap();
        let (sha, size) = sha256_file(&dir.path().join("b/etcd.db")).unwrap();
        info.size = size;
        info.sha256 = sha;
        // One flipped byte: same size, another checksum; etcdctl is never reached.
        std::fs::write(dir.path().join("b/etcd.db"), b"snapshot bytez").unwrap();
        let error = verify_files(dir.path(), &info, Path::new("/nonexistent/etcdctl"), None)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("backup b: etcd.db's sha256"), "{error}");
        std::fs::write(dir.path().join("b/etcd.db"), b"snapshot").unwrap();
        let error = verify_files(dir.path(), &info, Path::new("/nonexistent/etcdctl"), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn listing_skips_interrupted_backups() {
        let dir = tempfile::tempdir().unwrap();
        for (name, created) in [("new", 20), ("old", 10)] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(
                dir.path().join(name).join("backup.json"),
                serde_json::to_vec(&backup(name, created)).unwrap(),
            )
            .unwrap();
        }
        std::fs::create_dir_all(dir.path().join("interrupted")).unwrap();
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["old", "new"]);
        assert_eq!(find(dir.path(), None).unwrap().name, "new");
        assert!(find(dir.path(), Some("nope")).is_err());
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
