//! `kinit certs`: the cluster PKI on the operator's machine (or, with `--dir /etc/kubernetes`,
//! on a node).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use kinit::ops::certs::{self, Selection};
use kinit_pki::{Action, PkiDirectory, Placement, Signer};
use time::OffsetDateTime;

use super::ConfigArg;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster's CAs, certificates, service-account keys and kubeconfigs.
    ///
    /// Idempotent: valid files are kept byte for byte, missing ones are created, certificates
    /// whose names no longer match the configuration are reissued with their existing keys,
    /// and CA keys are never overwritten. To bring your own CA, place ca.crt and ca.key under
    /// DIR/pki/ first. Keys are written 0600, certificates 0644.
    Generate {
        #[command(flatten)]
        config: ConfigArg,
        /// Directory shaped like /etc/kubernetes [default: .kinit/<cluster>/kubernetes beside the config].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Lay out one node's /etc/kubernetes (kubeadm's exact file names) instead of the
        /// whole cluster's.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Show when each certificate and CA expires, as `kubeadm certs check-expiration` does.
    CheckExpiration {
        /// Directory shaped like /etc/kubernetes.
        #[arg(long, value_name = "DIR", required_unless_present = "config")]
        dir: Option<PathBuf>,
        /// Read the directory from this configuration's state instead of --dir.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// With -c: read the certificates in use on every host, over SSH, instead of the state
        /// directory's copies.
        #[arg(long, requires = "config")]
        on_hosts: bool,
        #[command(flatten)]
        access: super::AccessArgs,
    },
    /// Reissue certificates with their existing keys and contents and a fresh validity.
    ///
    /// NAME is kubeadm's name of a certificate (apiserver, apiserver-etcd-client,
    /// apiserver-kubelet-client, etcd-healthcheck-client, etcd-peer, etcd-server,
    /// front-proxy-client, admin.conf, super-admin.conf, controller-manager.conf,
    /// scheduler.conf, kubelet.conf) or `all`. Certificate authorities are kept.
    Renew {
        /// Certificates to renew, or `all`.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Directory shaped like /etc/kubernetes.
        #[arg(long, value_name = "DIR", required_unless_present = "config")]
        dir: Option<PathBuf>,
        /// The cluster of this configuration: renew in its state directory, then put the
        /// certificates on its hosts and restart what reads them, one control plane at a time.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "FILE",
            conflicts_with = "dir"
        )]
        config: Option<PathBuf>,
        /// With -c: renew in the state directory only, leaving the hosts alone.
        #[arg(long, requires = "config")]
        offline: bool,
        #[command(flatten)]
        run: super::cluster::RunArgs,
    },
    /// Print the CA pin joining nodes check: sha256:<hex of the CA's public key info>.
    CaPin {
        /// Directory shaped like /etc/kubernetes.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The directory a command works on: `--dir`, or the state directory of `--config`.
fn resolve_dir(
    dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Option<kinit::config::LoadedCluster>)> {
    let loaded = match config {
        Some(path) => Some(ConfigArg { path }.load()?),
        None => None,
    };
    let dir = match (dir, &loaded) {
        (Some(dir), _) => dir,
        (None, Some(loaded)) => super::state_dir(loaded).kubernetes(),
        (None, None) => unreachable!("clap requires --dir or --config"),
    };
    Ok((dir, loaded))
}

fn renew_on_cluster(
    loaded: &kinit::config::LoadedCluster,
    selection: &Selection,
    run: super::cluster::RunArgs,
) -> anyhow::Result<ExitCode> {
    let cluster = &loaded.cluster;
    let state = super::state_dir(loaded);
    let progress = std::sync::Arc::new(crate::progress::Progress::new(run.output));
    let options = kinit::ops::cluster::ClusterRun {
        state: state.clone(),
        bundle: None,
        assets: run.assets.assets(),
        run: run.options(
            state.root().join("journal").join("certs-renew.json"),
            Some(cluster),
        )?,
        ignore_preflight: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (outcomes, report) = runtime.block_on(certs::renew_on_cluster(
        cluster,
        options,
        selection,
        progress.clone(),
    ))?;
    for outcome in &outcomes {
        eprintln!("[renew] renewed {}", outcome.file.display());
    }
    if !super::cluster::summarize(
        &progress,
        &report,
        &format!("kinit certs renew … -c {}", loaded.path.display()),
    ) {
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "[renew] {} certificates renewed and in use on every host of {}",
        outcomes.len(),
        cluster.name()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: CertsCommand) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    match command {
        CertsCommand::Generate { config, dir, node } => {
            let loaded = config.load()?;
            let cluster = &loaded.cluster;
            let dir = dir.unwrap_or_else(|| super::state_dir(&loaded).kubernetes());
            let placement = match node {
                Some(node) => {
                    anyhow::ensure!(
                        cluster.host(&node).is_some(),
                        "--node {node}: no host of that name in {}",
                        loaded.path.display()
                    );
                    Placement::Node(node)
                }
                None => Placement::Cluster,
            };
            let outcomes = certs::generate(cluster, &dir, &placement, now)
                .with_context(|| format!("generating the PKI in {}", dir.display()))?;
            let (mut created, mut reissued, mut kept) = (0, 0, 0);
            for outcome in &outcomes {
                match &outcome.action {
                    Action::Kept => kept += 1,
                    Action::Created => created += 1,
                    Action::Reissued(_) => reissued += 1,
                }
                if outcome.action != Action::Kept {
                    println!("[certs] {} {}", outcome.action, outcome.file.display());
                }
            }
            println!(
                "[certs] {}: {created} created, {reissued} reissued, {kept} unchanged",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::CheckExpiration {
            dir: _,
            config,
            output,
            on_hosts: true,
            access,
        } => {
            let loaded = ConfigArg {
                path: config.expect("clap requires --config"),
            }
            .load()?;
            let run = kinit::engine::runner::RunOptions {
                ssh: access.ssh_options()?,
                sudo_password: access.sudo_password(&loaded.cluster)?,
                ..Default::default()
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let (found, unreachable) =
                runtime.block_on(certs::check_expiration_on_hosts(&loaded.cluster, &run));
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "certificates": found.iter().map(|c| serde_json::json!({
                            "host": c.host, "file": c.file, "commonName": c.common_name,
                            "expires": c.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                            "residual": certs::residual(c.not_after, now), "ca": c.is_ca,
                        })).collect::<Vec<_>>(),
                        "unreachable": unreachable.iter().map(|(h, e)| serde_json::json!({"host": h, "error": e})).collect::<Vec<_>>(),
                    }))?
                ),
                Output::Table => {
                    println!(
                        "{:<10} {:<58} {:<26} {:<10} CA",
                        "HOST", "FILE", "EXPIRES", "RESIDUAL"
                    );
                    for c in &found {
                        println!(
                            "{:<10} {:<58} {:<26} {:<10} {}",
                            c.host,
                            c.file,
                            c.not_after
                                .format(time::macros::format_description!(
                                    "[month repr:short] [day], [year] [hour]:[minute] UTC"
                                ))
                                .unwrap_or_default(),
                            certs::residual(c.not_after, now),
                            if c.is_ca { "yes" } else { "no" }
                        );
                    }
                    for (host, error) in &unreachable {
                        eprintln!("error: host {host}: {error}");
                    }
                }
            }
            Ok(if unreachable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CertsCommand::CheckExpiration {
            dir,
            config,
            output,
            ..
        } => {
            let (dir, _) = resolve_dir(dir, config)?;
            let expiry = certs::check_expiration(&dir)?;
            anyhow::ensure!(
                !expiry.authorities.is_empty() || !expiry.certificates.is_empty(),
                "{}: no certificates found (expected pki/ca.crt and kubeconfigs); is this the right --dir?",
                dir.display()
            );
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&expiry_json(&expiry, now))?
                ),
                Output::Table => print_expiry_table(&expiry, now),
            }
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Renew {
            names,
            dir,
            config,
            offline,
            run,
        } => {
            let (dir, loaded) = resolve_dir(dir, config)?;
            let selection = if names.iter().any(|n| n == "all") {
                Selection::All
            } else {
                Selection::Names(names)
            };
            if let (Some(loaded), false) = (&loaded, offline) {
                return renew_on_cluster(loaded, &selection, run);
            }
            let settings = loaded
                .as_ref()
                .map(|l| certs::settings(&l.cluster))
                .unwrap_or_default();
            let outcomes = certs::renew(&dir, &selection, &settings, now)?;
            anyhow::ensure!(
                !outcomes.is_empty(),
                "{}: none of the named certificates exist",
                dir.display()
            );
            for outcome in &outcomes {
                println!("[renew] renewed {}", outcome.file.display());
            }
            println!(
                "[renew] {} certificates renewed; put them on the hosts and restart what reads them (`kinit certs renew -c cluster.yaml` does both)",
                outcomes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::CaPin { dir } => {
            let authorities = PkiDirectory::new(&dir).load_authorities()?;
            println!(
                "{}",
                kinit_pki::pin::ca_pin(&authorities.get(Signer::Ca).certificate)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn format_date(t: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.format(&format).unwrap_or_else(|_| t.to_string())
}

fn print_expiry_table(expiry: &kinit_pki::Expiry, now: OffsetDateTime) {
    let with_nodes = expiry.certificates.iter().any(|c| c.node.is_some());
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![{
        let mut header = vec!["CERTIFICATE"];
        if with_nodes {
            header.push("NODE");
        }
        header.extend([
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
        ]);
        header.into_iter().map(str::to_owned).collect::<Vec<_>>()
    }];
    for c in &expiry.certificates {
        let mut row = vec![c.name.clone()];
        if with_nodes {
            row.push(c.node.clone().unwrap_or_default());
        }
        row.extend([
            format_date(c.not_after),
            certs::residual(c.not_after, now),
            c.authority.unwrap_or("unknown").to_owned(),
            yes_no(c.externally_managed).to_owned(),
        ]);
        rows.push(row);
    }
    print_table(&rows);
    println!();
    let mut rows = vec![
        [
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for a in &expiry.authorities {
        rows.push(vec![
            a.name.to_owned(),
            format_date(a.not_after),
            certs::residual(a.not_after, now),
            yes_no(a.externally_managed).to_owned(),
        ]);
    }
    print_table(&rows);
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

fn expiry_json(expiry: &kinit_pki::Expiry, now: OffsetDateTime) -> serde_json::Value {
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    serde_json::json!({
        "certificates": expiry.certificates.iter().map(|c| serde_json::json!({
            "name": c.name,
            "node": c.node,
            "file": c.file,
            "expires": rfc3339(c.not_after),
            "residualSeconds": (c.not_after - now).whole_seconds(),
            "authority": c.authority,
            "externallyManaged": c.externally_managed,
        })).collect::<Vec<_>>(),
        "authorities": expiry.authorities.iter().map(|a| serde_json::json!({
            "name": a.name,
            "file": a.file,
            "expires": rfc3339(a.not_after),
            "residualSeconds": (a.not_after - now).whole_seconds(),
            "externallyManaged": a.externally_managed,
        })).collect::<Vec<_>>(),
    })
}
