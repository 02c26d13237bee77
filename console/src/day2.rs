//! Day-2 work from the browser: nodes (add and join, join command, drain and remove), backups
//! (download, restore, schedule) and upgrades (plan, apply, resume). Each action is the
//! operations library's, run as a console operation with its progress in the log; anything
//! that changes the cluster asks for an explicit confirmation first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kinit::config::LoadedCluster;
use kinit::engine::assets::Assets;
use kinit::engine::runner::RunOptions;
use kinit::ops::cluster::ClusterRun;
use kinit::state::StateDir;
use serde::Deserialize;

use crate::db::{Role, Session};
use crate::operations::LogSink;
use crate::pages;
use crate::web::{Console, Shared, page, require, start_operation};

/// A run as the CLI's defaults make it, journaled like the CLI's, so `--resume` from either
/// front end continues the other's run.
fn cluster_run(state: &StateDir, journal: &str, resume: bool) -> ClusterRun {
    ClusterRun {
        state: state.clone(),
        bundle: None,
        assets: Assets::default(),
        run: RunOptions {
            resume,
            journal: Some(state.root().join("journal").join(journal)),
            ..RunOptions::default()
        },
        ignore_preflight: Vec::new(),
    }
}

fn backup_key(console: &Console) -> Result<Option<kinit::ops::sealed::Key>, String> {
    console
        .backup_key_file
        .as_deref()
        .map(kinit::ops::sealed::Key::read)
        .transpose()
}

fn loaded(console: &Console) -> Result<Arc<LoadedCluster>, String> {
    console.configuration.load()
}

/// A run's failures, in one message that says how to go on.
fn failures(report: &kinit::engine::runner::RunReport) -> Result<(), String> {
    if report.success() {
        return Ok(());
    }
    Err(report
        .failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

// ---------------------------------------------------------------------------------- nodes

pub async fn nodes_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Html<String> {
    page(
        &console,
        "Nodes",
        Some(&session),
        "/nodes",
        pages::nodes(node_rows(&console), &session, None, None),
    )
}

/// The configuration's hosts, with what the latest look at the cluster found on each.
pub(crate) fn node_rows(console: &Console) -> Result<Vec<pages::NodeRow>, String> {
    let loaded = loaded(console)?;
    let observed = console.health.latest();
    Ok(loaded
        .cluster
        .hosts
        .iter()
        .map(|host| pages::NodeRow {
            name: host.name.to_string(),
            address: host.address.to_string(),
            roles: host
                .roles
                .iter()
                .map(|r| kinit::ops::inventory::role_name(*r))
                .collect::<Vec<_>>()
                .join(", "),
            observed: observed
                .as_ref()
                .and_then(|o| o.status.as_ref().ok())
                .and_then(|s| s.nodes.iter().find(|n| n.name == host.name.as_str()))
                .cloned(),
        })
        .collect())
}

/// A join command for a machine that joins by itself (`kinit join` run there). It holds a
/// new bootstrap token: shown once to the operator who asked, never logged or audited.
pub async fn join_command(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "token create") {
        return refused;
    }
    let made = match loaded(&console) {
        Ok(loaded) => kinit::ops::bootstrap::cluster_join_command(
            &loaded.cluster,
            &RunOptions::default(),
            Duration::from_secs(24 * 3600),
            &format!("console: {}", session.user.name),
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let cluster = console.cluster_name();
    console.audit(
        &session.user.name,
        "token create",
        &cluster,
        match &made {
            Ok(_) => "ok: a join command valid for 24 h",
            Err(_) => "failed",
        },
    );
    let (command, error) = match made {
        Ok(command) => (Some(command), None),
        Err(e) => (None, Some(format!("No join command: {e}"))),
    };
    page(
        &console,
        "Nodes",
        Some(&session),
        "/nodes",
        pages::nodes(node_rows(&console), &session, command, error),
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct NewNode {
    name: String,
    address: String,
    role: String,
}

/// Adds the host to the configuration file, then joins it: the same run as
/// `kinit join -c cluster.yaml --node NAME`.
pub async fn node_add(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<NewNode>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "node add") {
        return refused;
    }
    let name = form.name.trim().to_owned();
    let roles = match form.role.as_str() {
        "worker" => vec![kinit::config::Role::Worker],
        "control-plane" => vec![kinit::config::Role::ControlPlane],
        other => {
            return refuse_node(&console, &session, &name, format!("unknown role {other:?}"));
        }
    };
    if console.operations.running().is_some() {
        return refuse_node(
            &console,
            &session,
            &name,
            "another operation is running; one operation at a time".into(),
        );
    }
    let path = console.configuration.path().to_owned();
    if let Err(problem) = kinit::config::add_host(&path, &name, form.address.trim(), &roles) {
        return refuse_node(&console, &session, &name, problem);
    }
    let configuration = console.configuration.clone();
    let health = console.health.clone();
    let node = name.clone();
    start_operation(
        &console,
        &session,
        "node join",
        &name,
        "/nodes",
        move |log| async move {
            let loaded = configuration.load()?;
            log.line(format!(
                "{node} added to {}; joining it to cluster {}",
                loaded.path.display(),
                loaded.cluster.name()
            ));
            let state = loaded.state_dir();
            let (report, _) = kinit::ops::cluster::install(
                &loaded.cluster,
                cluster_run(&state, "init.json", false),
                Some(&node),
                Arc::new(LogSink(log.clone())),
            )
            .await
            .map_err(|e| e.to_string())?;
            health.refresh();
            failures(&report)?;
            Ok(format!("{node} joined the cluster"))
        },
    )
}

fn refuse_node(console: &Shared, session: &Session, name: &str, problem: String) -> Response {
    console.audit(
        &session.user.name,
        "node add",
        name,
        &format!("refused: {problem}"),
    );
    let body = page(
        console,
        "Nodes",
        Some(session),
        "/nodes",
        pages::nodes(node_rows(console), session, None, Some(problem)),
    );
    (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
}

pub async fn node_remove_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let known = loaded(&console).is_ok_and(|l| l.cluster.host(&name).is_some());
    if !known {
        return not_found(
            &console,
            &session,
            "/nodes",
            &format!("no node named {name}"),
        );
    }
    page(
        &console,
        "Remove a node",
        Some(&session),
        "/nodes",
        pages::confirm(pages::Confirm {
            heading: format!("Remove {name}"),
            consequences: vec![
                format!("{name} is drained: its pods move elsewhere, PodDisruptionBudgets respected (up to 5 minutes)."),
                format!("Its Node object is deleted; a control plane also leaves etcd."),
                format!("The host is reset: kinit's services stop and its files are removed."),
            ],
            action: format!("/nodes/{name}/remove"),
            word: name.clone(),
            button: format!("Remove {name}"),
            csrf: session.csrf.clone(),
            back: "/nodes",
        }),
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct Confirmation {
    #[serde(default)]
    confirm: String,
}

pub async fn node_remove(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
    Form(form): Form<Confirmation>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "node remove") {
        return refused;
    }
    if form.confirm.trim() != name {
        console.audit(
            &session.user.name,
            "node remove",
            &name,
            "refused: not confirmed",
        );
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Type {name} to confirm; nothing was changed."),
        )
            .into_response();
    }
    let configuration = console.configuration.clone();
    let health = console.health.clone();
    let node = name.clone();
    start_operation(
        &console,
        &session,
        "node remove",
        &name,
        "/nodes",
        move |log| async move {
            let loaded = configuration.load()?;
            let state = loaded.state_dir();
            log.line(format!("draining {node} and taking it out of the cluster"));
            let (removed, reset) = kinit::ops::node::remove(
                &loaded.cluster,
                cluster_run(&state, "reset.json", false),
                &node,
                kinit::ops::node::RemoveOptions {
                    drain_timeout: Duration::from_secs(300),
                    skip_reset: false,
                },
                Arc::new(LogSink(log.clone())),
            )
            .await
            .map_err(|e| e.to_string())?;
            health.refresh();
            failures(&removed)?;
            if let Some(reset) = &reset {
                failures(reset).map_err(|e| {
                    format!("{node} is out of the cluster, but its host was not reset: {e}")
                })?;
            }
            Ok(format!(
                "{node} is out of the cluster; remove it from {} so the next `kinit init` forgets it",
                loaded.path.display()
            ))
        },
    )
}

fn not_found(console: &Shared, session: &Session, current: &'static str, what: &str) -> Response {
    let body = page(
        console,
        "Not found",
        Some(session),
        current,
        pages::message("Not found", what.to_owned()),
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

// -------------------------------------------------------------------------------- backups

fn backup_dir(console: &Console) -> Result<PathBuf, String> {
    Ok(kinit::ops::backup::default_dir(
        &loaded(console)?.state_dir(),
    ))
}

/// The backup as one tar (its snapshot, its PKI archive and its record), streamed as it is
/// written so a large snapshot never sits in memory.
pub async fn backup_download(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let found = backup_dir(&console).and_then(|dir| {
        kinit::ops::backup::find(&dir, Some(&name))
            .map(|info| (dir.join(&info.name), info))
            .map_err(|e| e.to_string())
    });
    let (path, info) = match found {
        Ok(found) => found,
        Err(e) => return not_found(&console, &session, "/backups", &e),
    };
    console.audit(&session.user.name, "backup download", &info.name, "ok");
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let folder = info.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(tokio_util::io::SyncIoBridge::new(writer));
        let written = tar
            .append_dir_all(&folder, &path)
            .and_then(|()| tar.finish());
        if let Err(e) = written {
            // The browser sees a truncated download, which tar reports; say why here.
            tracing::warn!("sending backup {folder}: {e}");
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.tar\"", info.name),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response()
}

pub async fn backup_restore_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let found = backup_dir(&console)
        .and_then(|dir| kinit::ops::backup::find(&dir, Some(&name)).map_err(|e| e.to_string()));
    let info = match found {
        Ok(info) => info,
        Err(e) => return not_found(&console, &session, "/backups", &e),
    };
    let cluster = console.cluster_name();
    page(
        &console,
        "Restore a backup",
        Some(&session),
        "/backups",
        pages::confirm(pages::Confirm {
            heading: format!("Restore {}", info.name),
            consequences: vec![
                format!(
                    "Cluster {cluster} goes back to {} (etcd revision {}): everything written since is lost.",
                    pages::when(info.created_unix),
                    info.revision
                ),
                "The API servers stop while every etcd member is restored; workloads keep running.".into(),
                "The backup is checked first: a damaged backup or one of another cluster changes nothing.".into(),
            ],
            action: format!("/backups/{}/restore", info.name),
            word: cluster,
            button: "Restore".into(),
            csrf: session.csrf.clone(),
            back: "/backups",
        }),
    )
    .into_response()
}

pub async fn backup_restore(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
    Form(form): Form<Confirmation>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "backup restore") {
        return refused;
    }
    let cluster = console.cluster_name();
    if form.confirm.trim() != cluster {
        console.audit(
            &session.user.name,
            "backup restore",
            &name,
            "refused: not confirmed",
        );
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Type the cluster's name, {cluster}, to confirm; nothing was changed."),
        )
            .into_response();
    }
    let key = match backup_key(&console) {
        Ok(key) => key,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let configuration = console.configuration.clone();
    let health = console.health.clone();
    let backup = name.clone();
    start_operation(
        &console,
        &session,
        "backup restore",
        &name,
        "/backups",
        move |log| async move {
            let loaded = configuration.load()?;
            let state = loaded.state_dir();
            log.line(format!(
                "checking backup {backup}, then restoring every etcd member"
            ));
            let (info, report) = kinit::ops::backup::restore(
                &loaded.cluster,
                cluster_run(&state, "restore.json", false),
                &kinit::ops::backup::default_dir(&state),
                Some(&backup),
                key.as_ref(),
                Arc::new(LogSink(log.clone())),
            )
            .await
            .map_err(|e| e.to_string())?;
            health.refresh();
            failures(&report)?;
            Ok(format!(
                "cluster {} restored from {} (etcd revision {})",
                loaded.cluster.name(),
                info.name,
                info.revision
            ))
        },
    )
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    cron: String,
    #[serde(default)]
    keep_last: String,
    #[serde(default)]
    keep_days: String,
}

/// Installs (or, with an empty cron expression, removes) scheduled backups on the etcd
/// members, as `kinit backup schedule` does.
pub async fn backup_schedule(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<ScheduleForm>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "backup schedule") {
        return refused;
    }
    let number = |text: &str, what: &str| -> Result<Option<u32>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| format!("{what}: expected a whole number, found {text:?}"))
    };
    let cron = form.cron.trim().to_owned();
    let checked = number(&form.keep_last, "keep the last").and_then(|last| {
        let days = number(&form.keep_days, "keep days")?;
        if !cron.is_empty() {
            kinit::ops::schedule::on_calendar(&cron).map_err(|e| format!("{cron:?}: {e}"))?;
        }
        Ok((last, days))
    });
    let (keep_last, keep_days) = match checked {
        Ok(checked) => checked,
        Err(problem) => {
            console.audit(
                &session.user.name,
                "backup schedule",
                &cron,
                &format!("refused: {problem}"),
            );
            return crate::web::backups_response(
                &console,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
            );
        }
    };
    let schedule = (!cron.is_empty()).then(|| kinit::ops::backup::Schedule {
        cron: cron.clone(),
        retention: kinit::ops::backup::Retention {
            keep_last: keep_last.map(|n| n as usize),
            keep_days,
        },
    });
    let configuration = console.configuration.clone();
    start_operation(
        &console,
        &session,
        "backup schedule",
        if cron.is_empty() { "off" } else { &cron },
        "/backups",
        move |log| async move {
            let loaded = configuration.load()?;
            let state = loaded.state_dir();
            let report = kinit::ops::backup::schedule(
                &loaded.cluster,
                cluster_run(&state, "backup-schedule.json", false),
                schedule.as_ref(),
                Arc::new(LogSink(log.clone())),
            )
            .await
            .map_err(|e| e.to_string())?;
            failures(&report)?;
            Ok(match schedule {
                Some(s) => format!("backups scheduled on every etcd member: {}", s.cron),
                None => "scheduled backups removed; backups already taken stay".into(),
            })
        },
    )
}

// ------------------------------------------------------------------------------- upgrades

pub async fn upgrades_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Html<String> {
    let planned = match loaded(&console) {
        Ok(loaded) => {
            let state = loaded.state_dir();
            kinit::ops::upgrade::plan(&loaded.cluster, &state, &RunOptions::default(), None)
                .await
                .map_err(|e| e.to_string())
                .map(|plan| (plan, kinit::ops::upgrade::unfinished(&state)))
        }
        Err(e) => Err(e),
    };
    page(
        &console,
        "Upgrades",
        Some(&session),
        "/upgrades",
        pages::upgrades(planned, &session),
    )
}

#[derive(Deserialize)]
pub struct UpgradeForm {
    version: String,
    #[serde(default)]
    resume: bool,
}

pub async fn upgrade_apply(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<UpgradeForm>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "upgrade apply") {
        return refused;
    }
    let target: kinit::config::KubernetesVersion = match form.version.parse() {
        Ok(version) => version,
        Err(e) => {
            console.audit(
                &session.user.name,
                "upgrade apply",
                &form.version,
                "refused: not a version",
            );
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: {e}", form.version),
            )
                .into_response();
        }
    };
    let key = match backup_key(&console) {
        Ok(key) => key,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let configuration = console.configuration.clone();
    let health = console.health.clone();
    let resume = form.resume;
    start_operation(
        &console,
        &session,
        if resume {
            "upgrade resume"
        } else {
            "upgrade apply"
        },
        &target.to_string(),
        "/upgrades",
        move |log| async move {
            let loaded = configuration.load()?;
            let state = loaded.state_dir();
            let bundle = kinit::ops::upgrade::available(None)
                .into_iter()
                .find(|(version, _)| *version == target)
                .map(|(_, bundle)| bundle)
                .ok_or_else(|| {
                    format!("no bundle of Kubernetes {target} (`kinit bundle create`)")
                })?;
            log.line(format!(
                "upgrading cluster {} to Kubernetes {target}: a backup first, then one node at a time",
                loaded.cluster.name()
            ));
            let reports = kinit::ops::upgrade::apply(
                &loaded.cluster,
                cluster_run(&state, "upgrade.json", resume),
                kinit::ops::upgrade::ApplyOptions {
                    target,
                    bundle: Some(bundle),
                    drain_timeout: Duration::from_secs(300),
                    backup_dir: kinit::ops::backup::default_dir(&state),
                    backup_key: key,
                },
                Arc::new(LogSink(log.clone())),
            )
            .await
            .map_err(|e| e.to_string())?;
            health.refresh();
            for (node, report) in &reports {
                failures(report).map_err(|e| format!("{node}: {e}; resume when fixed"))?;
            }
            Ok(format!(
                "every node runs Kubernetes {target}; set kubernetesVersion: {target} in {}",
                loaded.path.display()
            ))
        },
    )
}
