//! kubeadm's workflow, on the machine itself: `kinit init` makes this machine the first control
//! plane of a new cluster and prints the command that joins others; `kinit join ENDPOINT
//! --token … --discovery-token-ca-cert-hash …` makes this machine a node of that cluster by
//! discovery and TLS bootstrap. Both run the same playbook as the SSH mode, over the local
//! transport, with the PKI directly in /etc/kubernetes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinit_pki::{BootstrapToken, CertificateInfo, Placement};
use serde_json::{Value, json};

use super::bootstrap::{self, Discovered};
use super::cluster::{self, ClusterError, Installed};
use super::upload_certs;
use crate::config::{self, Cluster, KubernetesVersion, Role};
use crate::engine::assets::Assets;
use crate::engine::events::EventSink;
use crate::engine::facts::Facts;
use crate::engine::inventory::Connection;
use crate::engine::playbook;
use crate::engine::runner::{RunOptions, RunReport, Runner};
use crate::engine::templates::Templates;
use crate::engine::transport::local::LocalTransport;
use crate::engine::transport::{Privilege, Session};
use crate::state::StateDir;

/// Where a machine keeps its Kubernetes files, as kubeadm does.
pub const ETC_KUBERNETES: &str = "/etc/kubernetes";
/// kinit's own state on a machine: journal and record of the installation.
pub const LOCAL_STATE: &str = "/var/lib/kinit";

pub struct LocalInit {
    pub cluster_name: String,
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub kubernetes_version: Option<KubernetesVersion>,
    pub pod_cidr: config::Cidr,
    pub service_cidr: config::Cidr,
    pub dns_domain: config::DnsDomain,
    pub bundle: Option<PathBuf>,
    pub token_ttl: Duration,
    /// Share the control-plane certificates, sealed, so other machines can join as control
    /// planes (kubeadm's `--upload-certs`).
    pub upload_certs: bool,
    pub ignore_preflight: Vec<String>,
    pub run: RunOptions,
    pub assets: Assets,
}

pub struct LocalJoin {
    pub endpoint: String,
    pub token: BootstrapToken,
    pub pins: Vec<String>,
    /// Join as a control plane, with the key that opens the shared certificates.
    pub certificate_key: Option<String>,
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub bundle: Option<PathBuf>,
    pub ignore_preflight: Vec<String>,
    pub run: RunOptions,
    pub assets: Assets,
}

/// What `kinit init` reports: the command that joins other machines.
pub struct Initialized {
    pub report: RunReport,
    pub join_command: String,
    /// With `upload_certs`: the command that joins another control plane.
    pub control_plane_join_command: Option<String>,
    pub admin_kubeconfig: PathBuf,
}

async fn local_facts() -> Result<Facts, ClusterError> {
    let session = Session::new(Arc::new(LocalTransport), Privilege::Root);
    Facts::gather(&session)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))
}

/// The machine's name and address: given, or its hostname and first non-loopback IPv4.
fn identity(
    facts: &Facts,
    name: Option<&str>,
    address: Option<IpAddr>,
) -> Result<(config::NodeName, IpAddr), ClusterError> {
    let name = name.unwrap_or(&facts.hostname).to_ascii_lowercase();
    let name: config::NodeName = name
        .parse()
        .map_err(|e| ClusterError::Setup(format!("{e}; choose one with --node-name")))?;
    let address = match address {
        Some(address) => address,
        None => facts
            .addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .find(|a| a.is_ipv4() && !a.is_loopback())
            .ok_or_else(|| ClusterError::Setup("this machine has no IPv4 address to advertise; give one with --advertise-address".into()))?,
    };
    Ok((name, address))
}

/// A one-host cluster configuration for this machine.
fn machine_cluster(
    cluster_name: &str,
    version: KubernetesVersion,
    node: config::NodeName,
    address: IpAddr,
    role: Role,
    networking: config::Networking,
) -> Result<Cluster, ClusterError> {
    let cluster = Cluster {
        api_version: config::ApiVersion::V1Alpha1,
        kind: config::Kind::Cluster,
        metadata: config::Metadata {
            name: cluster_name
                .parse()
                .map_err(|e: String| ClusterError::Setup(e))?,
        },
        kubernetes_version: version,
        ssh: config::Ssh::default(),
        hosts: vec![config::Host {
            name: node,
            address: config::Address(address),
            roles: vec![role],
            ssh: config::Ssh::default(),
            sudo: Some(false),
        }],
        networking,
        control_plane: config::ControlPlane::default(),
        certificates: config::Certificates::default(),
    };
    // A joining worker's configuration describes only itself: the control planes it joins are
    // not among its hosts, which validation would otherwise require.
    let problems: Vec<String> = config::validate(&cluster)
        .into_iter()
        .filter(|d| d.severity == config::Severity::Error)
        .filter(|d| role == Role::ControlPlane || d.path != "hosts")
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    if problems.is_empty() {
        Ok(cluster)
    } else {
        Err(ClusterError::Setup(problems.join("; ")))
    }
}

/// One run of the playbook on this machine.
struct MachineRun<'a> {
    cluster: &'a Cluster,
    bundle: Option<&'a Path>,
    assets: &'a Assets,
    run: RunOptions,
    ignore_preflight: &'a [String],
    /// The kubelet's kubeconfig to install; empty when the kubelet gets one by TLS bootstrap.
    kubelet_conf: &'a str,
    /// The machine's etcd member joins an existing etcd cluster.
    joins_etcd: bool,
    /// Writes the machine's PKI and credentials: after preflight, which would otherwise take
    /// them for another installation's.
    write_credentials: Box<dyn FnOnce() -> Result<(), ClusterError> + Send + 'a>,
}

async fn run_local(
    machine: MachineRun<'_>,
    edit_vars: impl FnOnce(&mut BTreeMap<String, Value>),
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    let MachineRun {
        cluster,
        bundle,
        assets,
        mut run,
        ignore_preflight,
        kubelet_conf,
        joins_etcd,
        write_credentials,
    } = machine;
    let pki = Path::new(ETC_KUBERNETES);
    let state = StateDir::new(LOCAL_STATE);
    let installed = Installed::load(&state);
    let (bundle_dir, manifest) = cluster::unpacked_bundle(bundle, cluster.kubernetes_version)?;
    let templates = Templates::load(assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let local_inventory = |vars| {
        let mut inventory = cluster::run_inventory(cluster, pki, vars, &Installed::default());
        for (host, configured) in inventory.hosts.iter_mut().zip(&cluster.hosts) {
            host.connection = Connection::Local;
            host.sudo = false;
            host.vars
                .insert("address".into(), json!(configured.address.to_string()));
            if joins_etcd {
                host.vars.insert("etcd_state".into(), json!("existing"));
            }
        }
        inventory
    };
    let node = cluster.hosts[0].name.to_string();
    if !run.resume && !installed.hosts.contains(&node) {
        // Before the credentials exist: preflight takes files in /etc/kubernetes for another
        // installation's.
        let probe = Runner::new(
            local_inventory(BTreeMap::new()),
            Templates::load(assets).map_err(|e| ClusterError::Setup(e.to_string()))?,
            run.clone(),
            sink.clone(),
        );
        cluster::preflight(
            &probe,
            cluster,
            std::slice::from_ref(&node),
            ignore_preflight,
        )
        .await?;
    }
    write_credentials()?;
    let mut vars = cluster::variables(cluster, pki, &manifest, &Installed::default())?;
    edit_vars(&mut vars);
    let mut inventory = local_inventory(vars);
    for host in &mut inventory.hosts {
        host.vars.insert("node_pki".into(), json!(pki.join("pki")));
        host.vars.insert("kubelet_conf".into(), json!(kubelet_conf));
    }
    let (name, source) = assets.playbook("init").map_err(ClusterError::Setup)?;
    let playbook =
        playbook::parse(&name, &source).map_err(|e| ClusterError::Setup(e.to_string()))?;
    run.files = bundle_dir;
    run.journal = Some(state.root().join("journal.json"));
    let runner = Runner::new(inventory, templates, run, sink);
    let report = runner
        .run(&playbook)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    if report.success() && !runner.dry_run() {
        let mut installed = installed;
        installed.hosts.insert(node);
        let text = serde_json::to_vec_pretty(&installed).expect("serialisable");
        kinit_pki::write_atomic(&state.root().join("installed.json"), &text, 0o644)
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
    }
    Ok(report)
}

/// Makes this machine the first control plane of a new cluster.
pub async fn init(
    options: LocalInit,
    sink: Arc<dyn EventSink>,
) -> Result<Initialized, ClusterError> {
    let facts = local_facts().await?;
    let (node, address) = identity(
        &facts,
        options.node_name.as_deref(),
        options.advertise_address,
    )?;
    let version = match (options.kubernetes_version, &options.bundle) {
        (Some(version), _) => version,
        (None, Some(bundle)) => crate::bundle::read_manifest(bundle)?
            .kubernetes_version
            .parse()
            .map_err(ClusterError::Setup)?,
        (None, None) => crate::bundle::lab::SOURCE_VERSION,
    };
    let networking = config::Networking {
        pod_cidr: options.pod_cidr,
        service_cidr: options.service_cidr,
        dns_domain: options.dns_domain,
        ..config::Networking::default()
    };
    let cluster = machine_cluster(
        &options.cluster_name,
        version,
        node,
        address,
        Role::ControlPlane,
        networking,
    )?;
    let kubelet_conf = format!("{ETC_KUBERNETES}/kubelet.conf");
    let dry_run = options.run.dry_run;
    let machine = MachineRun {
        cluster: &cluster,
        bundle: options.bundle.as_deref(),
        assets: &options.assets,
        run: options.run,
        ignore_preflight: &options.ignore_preflight,
        kubelet_conf: &kubelet_conf,
        joins_etcd: false,
        write_credentials: Box::new(|| {
            super::certs::generate(
                &cluster,
                Path::new(ETC_KUBERNETES),
                &Placement::Node(cluster.hosts[0].name.to_string()),
                time::OffsetDateTime::now_utc(),
            )?;
            Ok(())
        }),
    };
    let report = run_local(machine, |_| {}, sink).await?;
    let mut join_command = String::new();
    let mut control_plane_join_command = None;
    if report.success() && !dry_run {
        let session = Session::new(Arc::new(LocalTransport), Privilege::Root);
        let token = bootstrap::create_token(&session, options.token_ttl, "created by kinit init")
            .await
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        let certificate_key = if options.upload_certs {
            Some(
                share_certificates(&session)
                    .await
                    .map_err(|e| ClusterError::Setup(e.to_string()))?,
            )
        } else {
            None
        };
        let ca = std::fs::read_to_string(format!("{ETC_KUBERNETES}/pki/ca.crt"))
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        let ca = CertificateInfo::from_pem(&ca).map_err(|e| ClusterError::Setup(e.to_string()))?;
        join_command = format!(
            "kinit join {address}:6443 --token {} --discovery-token-ca-cert-hash {}",
            token.expose(),
            kinit_pki::pin::ca_pin(&ca)
        );
        control_plane_join_command = certificate_key
            .map(|key| format!("{join_command} --control-plane --certificate-key {key}"));
    }
    Ok(Initialized {
        report,
        join_command,
        control_plane_join_command,
        admin_kubeconfig: PathBuf::from(ETC_KUBERNETES).join("admin.conf"),
    })
}

/// How long shared control-plane certificates stay in the cluster (kubeadm's choice too).
pub const SHARED_CERTIFICATES_TTL: Duration = Duration::from_secs(2 * 3600);

/// Seals this control plane's shared certificates into the cluster under a new certificate
/// key, which is returned: it exists nowhere else.
pub async fn share_certificates(session: &Session) -> Result<String, bootstrap::BootstrapError> {
    let owner = bootstrap::create_token(
        session,
        SHARED_CERTIFICATES_TTL,
        "owns kinit-certs, the sealed control-plane certificates",
    )
    .await?;
    let key = upload_certs::new_certificate_key();
    upload_certs::upload(session, &key, owner.id()).await?;
    Ok(key)
}

/// Adds this machine to etcd through the member at `host` (a control plane of the cluster),
/// unless a failed attempt already did, and returns the `--initial-cluster` it starts with.
fn join_etcd(
    etcdctl: &Path,
    host: &str,
    node: &str,
    address: IpAddr,
) -> Result<String, ClusterError> {
    let peer = format!("https://{}", std::net::SocketAddr::new(address, 2380));
    let pki = Path::new(ETC_KUBERNETES).join("pki/etcd");
    let etcdctl_run = |args: &[&str]| -> Result<String, ClusterError> {
        let output = std::process::Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://{host}:2379"))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!(
                "--cert={}",
                pki.join("healthcheck-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                pki.join("healthcheck-client.key").display()
            ))
            .arg("--command-timeout=15s")
            .args(args)
            .output()
            .map_err(|e| ClusterError::Setup(format!("{}: {e}", etcdctl.display())))?;
        if !output.status.success() {
            return Err(ClusterError::Setup(format!(
                "etcd at {host}:2379, `etcdctl {}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let members = |text: &str| -> Result<Vec<(String, String)>, ClusterError> {
        let list: Value = serde_json::from_str(text)
            .map_err(|e| ClusterError::Setup(format!("etcd's member list: {e}")))?;
        Ok(list["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    m["peerURLs"][0].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    };
    let mut current = members(&etcdctl_run(&["member", "list", "-w", "json"])?)?;
    if !current.iter().any(|(_, url)| *url == peer) {
        etcdctl_run(&["member", "add", node, &format!("--peer-urls={peer}")])?;
        current = members(&etcdctl_run(&["member", "list", "-w", "json"])?)?;
    }
    let mut initial = Vec::new();
    for (name, url) in current {
        let name = match name.as_str() {
            "" if url == peer => node.to_owned(),
            "" => {
                return Err(ClusterError::Setup(format!(
                    "etcd has a member at {url} that never started (another join under way, or a failed one): \
                     finish that join, or remove the member with `etcdctl member remove`"
                )));
            }
            _ => name,
        };
        initial.push(format!("{name}={url}"));
    }
    Ok(initial.join(","))
}

/// Makes this machine a node of the cluster at `endpoint`: discovery, then the node's part of
/// the playbook, then TLS bootstrap by the kubelet (bootstrap token → CSR → certificate). A
/// control plane instead opens the shared certificates, issues its own from them, joins etcd
/// and runs the control plane's part too.
pub async fn join(options: LocalJoin, sink: Arc<dyn EventSink>) -> Result<RunReport, ClusterError> {
    let discovered: Discovered = bootstrap::discover(
        &options.endpoint,
        &options.token,
        &options.pins,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let settings = bootstrap::cluster_settings(&discovered, &options.endpoint, &options.token)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let setting = |key: &str| settings[key].as_str().unwrap_or_default().to_owned();
    let parse = |key: &str| -> Result<String, ClusterError> {
        let value = setting(key);
        if value.is_empty() {
            Err(ClusterError::Setup(format!(
                "the cluster's kinit-config has no {key}"
            )))
        } else {
            Ok(value)
        }
    };
    let version: KubernetesVersion = parse("kubernetes-version")?
        .parse()
        .map_err(ClusterError::Setup)?;
    let networking = config::Networking {
        pod_cidr: parse("pod-cidr")?.parse().map_err(ClusterError::Setup)?,
        service_cidr: parse("service-cidr")?
            .parse()
            .map_err(ClusterError::Setup)?,
        dns_domain: parse("dns-domain")?.parse().map_err(ClusterError::Setup)?,
        node_cidr_mask_size: setting("node-cidr-mask-size").parse().unwrap_or(24),
        cni: match setting("cni").as_str() {
            "calico" => config::Cni::Calico,
            "flannel" => config::Cni::Flannel,
            _ => config::Cni::Bridge,
        },
    };
    // Opened before anything changes: a wrong key stops the join here.
    let shared = match &options.certificate_key {
        Some(key) => Some(
            upload_certs::download(&discovered, &options.endpoint, &options.token, key)
                .await
                .map_err(|e| ClusterError::Setup(e.to_string()))?,
        ),
        None => None,
    };
    let facts = local_facts().await?;
    let (node, address) = identity(
        &facts,
        options.node_name.as_deref(),
        options.advertise_address,
    )?;
    let cluster = machine_cluster(
        &parse("cluster-name")?,
        version,
        node.clone(),
        address,
        if shared.is_some() {
            Role::ControlPlane
        } else {
            Role::Worker
        },
        networking,
    )?;
    let bootstrap_conf =
        bootstrap::bootstrap_kubeconfig(&discovered, &options.endpoint, &options.token);
    let server = format!("https://{}", options.endpoint);
    let dry_run = options.run.dry_run;
    if let Some(shared) = shared {
        return join_control_plane(&cluster, options, shared, sink).await;
    }
    let machine = MachineRun {
        cluster: &cluster,
        bundle: options.bundle.as_deref(),
        assets: &options.assets,
        run: options.run,
        ignore_preflight: &options.ignore_preflight,
        kubelet_conf: "",
        joins_etcd: false,
        // The kubelet's first credentials: the token; TLS bootstrap replaces them with a
        // certificate.
        write_credentials: Box::new(move || {
            let etc = Path::new(ETC_KUBERNETES);
            kinit_pki::write_atomic(&etc.join("pki/ca.crt"), discovered.ca_pem.as_bytes(), 0o644)
                .map_err(|e| ClusterError::Setup(e.to_string()))?;
            kinit_pki::write_atomic(
                &etc.join("bootstrap-kubelet.conf"),
                bootstrap_conf.as_bytes(),
                0o600,
            )
            .map_err(|e| ClusterError::Setup(e.to_string()))
        }),
    };
    let report = run_local(
        machine,
        |vars| {
            vars.insert("api".into(), json!({"external_url": server, "node_local_balancer": false, "control_plane_addresses": []}));
        },
        sink,
    )
    .await?;
    if report.success() && !dry_run {
        wait_for_registration(node.as_str(), Duration::from_secs(180)).await?;
        // The token's credentials are no longer needed and still let anyone join: as kubeadm
        // does, do not leave them behind.
        let _ = std::fs::remove_file(Path::new(ETC_KUBERNETES).join("bootstrap-kubelet.conf"));
    }
    Ok(report)
}

async fn join_control_plane(
    cluster: &Cluster,
    options: LocalJoin,
    shared: Vec<(&'static str, u32, Vec<u8>)>,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    let (bundle_dir, _) =
        cluster::unpacked_bundle(options.bundle.as_deref(), cluster.kubernetes_version)?;
    let etcdctl = bundle_dir.join("bin/etcdctl");
    let node = cluster.hosts[0].name.to_string();
    let address = cluster.hosts[0].address.0;
    let etcd_host = options
        .endpoint
        .rsplit_once(':')
        .map_or(options.endpoint.as_str(), |(host, _)| host)
        .trim_matches(['[', ']'])
        .to_owned();
    let initial_cluster = Arc::new(std::sync::Mutex::new(String::new()));
    let learned = initial_cluster.clone();
    let kubelet_conf = format!("{ETC_KUBERNETES}/kubelet.conf");
    let server = format!("https://{}", options.endpoint);
    let machine = MachineRun {
        cluster,
        bundle: options.bundle.as_deref(),
        assets: &options.assets,
        run: options.run,
        ignore_preflight: &options.ignore_preflight,
        kubelet_conf: &kubelet_conf,
        joins_etcd: true,
        // The cluster's CAs and service-account keys, then this control plane's own
        // certificates signed by them, then its etcd membership (which needs those).
        write_credentials: Box::new(move || {
            let pki = Path::new(ETC_KUBERNETES).join("pki");
            for (file, mode, content) in &shared {
                kinit_pki::write_atomic(&pki.join(file), content, *mode)
                    .map_err(|e| ClusterError::Setup(e.to_string()))?;
            }
            super::certs::generate(
                cluster,
                Path::new(ETC_KUBERNETES),
                &Placement::Node(node.clone()),
                time::OffsetDateTime::now_utc(),
            )?;
            *learned.lock().expect("not poisoned") =
                join_etcd(&etcdctl, &etcd_host, &node, address)?;
            Ok(())
        }),
    };
    run_local(
        machine,
        |vars| {
            vars.insert("api".into(), json!({"external_url": server, "node_local_balancer": false, "control_plane_addresses": []}));
            let etcd = vars.entry("etcd".into()).or_insert_with(|| json!({}));
            etcd["initial_cluster"] = json!(*initial_cluster.lock().expect("not poisoned"));
            // Announced above, through a member of the cluster.
            etcd["joining"] = json!([]);
        },
        sink,
    )
    .await
}

/// Removes what kinit installed from this machine (`kinit reset` without a configuration).
pub async fn reset(
    mut run: RunOptions,
    assets: &Assets,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    let facts = local_facts().await?;
    let inventory = crate::engine::inventory::Inventory {
        hosts: vec![crate::engine::inventory::Host {
            name: facts.hostname.clone(),
            connection: Connection::Local,
            sudo: false,
            groups: Vec::new(),
            vars: BTreeMap::new(),
        }],
        vars: BTreeMap::new(),
    };
    let (name, source) = assets.playbook("reset").map_err(ClusterError::Setup)?;
    let playbook =
        playbook::parse(&name, &source).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let templates = Templates::load(assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
    run.journal = None;
    let runner = Runner::new(inventory, templates, run, sink);
    runner
        .run(&playbook)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))
}

/// Waits until the kubelet has its certificate (TLS bootstrap done) and its node is Ready.
async fn wait_for_registration(node: &str, timeout: Duration) -> Result<(), ClusterError> {
    let deadline = Instant::now() + timeout;
    let session = Session::new(Arc::new(LocalTransport), Privilege::Root);
    let check = format!(
        "test -s {ETC_KUBERNETES}/kubelet.conf && kubectl --kubeconfig={ETC_KUBERNETES}/kubelet.conf get node {node} \
         -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"
    );
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(output) = session
            .exec(&check, crate::engine::transport::Stdin::none(), true)
            .await
        {
            if output.stdout_text().trim() == "True" {
                return Ok(());
            }
            last = output.stderr_tail(2);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(ClusterError::Setup(format!(
        "{node} did not become Ready within {} s (last: {last}); see `journalctl -u kubelet`",
        timeout.as_secs()
    )))
}
