//! Installing clusters over SSH: `kinit init` brings every host of the inventory into the
//! cluster, `kinit join` adds hosts added to the inventory later. Both generate or complete the
//! PKI, unpack and verify the bundle, check every host before changing anything (preflight),
//! then run the `init` playbook with the cluster's facts as variables. What kinit installed is
//! recorded in the state directory, so that a later join knows which etcd members exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bundle::{self, Kind, Manifest};
use crate::config::{Cluster, KubernetesVersion, Role};
use crate::engine::assets::Assets;
use crate::engine::events::EventSink;
use crate::engine::inventory::Inventory;
use crate::engine::playbook;
use crate::engine::runner::{RunOptions, RunReport, Runner};
use crate::engine::templates::Templates;
use crate::ops::{certs, inventory, preflight};
use crate::state::{self, StateDir};
use crate::topology;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Setup(String),
    #[error("preflight found {} problem{}:\n{}\nfix them, or pass --ignore-preflight-errors=CHECK,… (or all) to go on regardless",
        .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Preflight(Vec<preflight::Finding>),
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
}

/// What a cluster run needs besides the configuration.
pub struct ClusterRun {
    pub state: StateDir,
    /// A bundle file; by default the lab bundle of the cluster's version from kinit's cache.
    pub bundle: Option<PathBuf>,
    pub assets: Assets,
    pub run: RunOptions,
    pub ignore_preflight: Vec<String>,
}

/// What kinit installed, kept in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Hosts that completed a run.
    pub hosts: BTreeSet<String>,
    /// The Kubernetes version the cluster runs (set by init, changed only by upgrades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<KubernetesVersion>,
}

impl Installed {
    fn path(state: &StateDir) -> PathBuf {
        state.root().join("installed.json")
    }

    pub fn load(state: &StateDir) -> Installed {
        std::fs::read(Installed::path(state))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub(crate) fn save(&self, state: &StateDir) -> Result<(), ClusterError> {
        let text = serde_json::to_vec_pretty(self).expect("serialisable");
        kinit_pki::write_atomic(&Installed::path(state), &text, 0o644)
            .map_err(|e| ClusterError::Setup(e.to_string()))
    }
}

/// The bundle to install from, verified and unpacked (once, into kinit's cache).
pub fn unpacked_bundle(
    requested: Option<&Path>,
    version: KubernetesVersion,
) -> Result<(PathBuf, Manifest), ClusterError> {
    let cache = state::cache_dir();
    let file = match requested {
        Some(file) => file.to_owned(),
        None if (version.major, version.minor) == (1, 20) => {
            match bundle::lab::cached(&cache, version) {
                // Checking Debian for newer packages takes seconds; `kinit bundle create` does it.
                Some(file) => file,
                None => bundle::lab::bundle(&cache, version)?,
            }
        }
        None => {
            return Err(ClusterError::Setup(format!(
                "no bundle for Kubernetes {version}: build one (`kinit bundle create --source upstream --kubernetes-version {version}`) and pass --bundle FILE"
            )));
        }
    };
    let manifest = bundle::read_manifest(&file)?;
    if manifest.kubernetes_version != version.to_string() {
        return Err(ClusterError::Setup(format!(
            "{} holds Kubernetes {}, but the configuration asks for {version}",
            file.display(),
            manifest.kubernetes_version
        )));
    }
    use sha2::Digest;
    let key = hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(&manifest).expect("serialisable"),
    ));
    let dir = cache.join("unpacked").join(&key[..16]);
    if !dir.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        bundle::extract(&file, &dir)?;
        std::fs::write(dir.join(".complete"), b"")
            .map_err(|e| ClusterError::Setup(format!("{}: {e}", dir.display())))?;
    }
    Ok((dir, manifest))
}

/// Images of the registry-less add-ons, by Kubernetes minor (as kubeadm pins CoreDNS).
fn addon_images(version: KubernetesVersion) -> Value {
    let coredns = match version.minor {
        0..=20 => "k8s.gcr.io/coredns:1.7.0",
        21 => "k8s.gcr.io/coredns/coredns:v1.8.0",
        22..=24 => "registry.k8s.io/coredns/coredns:v1.8.6",
        25..=28 => "registry.k8s.io/coredns/coredns:v1.10.1",
        _ => "registry.k8s.io/coredns/coredns:v1.11.1",
    };
    // Calico v3.21 is the last release tested with Kubernetes v1.20–v1.22.
    let calico = if version.minor <= 22 {
        "v3.21.6"
    } else {
        "v3.28.2"
    };
    json!({
        "coredns": coredns,
        "flannel": "docker.io/flannel/flannel:v0.25.7",
        "flannel_cni_plugin": "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2",
        "calico_cni": format!("docker.io/calico/cni:{calico}"),
        "calico_node": format!("docker.io/calico/node:{calico}"),
        "calico_kube_controllers": format!("docker.io/calico/kube-controllers:{calico}"),
        "csi_hostpath": "registry.k8s.io/sig-storage/hostpathplugin:v1.9.0",
        "csi_provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v3.6.0",
        "csi_registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.9.0",
    })
}

/// Flags that exist in some Kubernetes versions only; unit tests pin them.
pub fn version_flags(version: KubernetesVersion) -> Value {
    json!({
        // The insecure port was disabled by flag until the flag went in v1.24.
        "insecure_port": version.minor < 24,
        // Scheduler and controller manager served plain HTTP on --port until kubeadm v1.22.
        "component_port_zero": version.minor < 22,
    })
}

/// The template variables of a cluster run.
pub fn variables(
    cluster: &Cluster,
    pki_dir: &Path,
    manifest: &Manifest,
    installed: &Installed,
) -> Result<BTreeMap<String, Value>, ClusterError> {
    let version = cluster.kubernetes_version;
    let net = &cluster.networking;
    let ca = std::fs::read(pki_dir.join("pki/ca.crt")).map_err(|e| {
        ClusterError::Setup(format!("{}: {e}", pki_dir.join("pki/ca.crt").display()))
    })?;
    let members: Vec<_> = cluster.etcd_members().collect();
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}=https://{}:2380", m.name, m.address))
        .collect::<Vec<_>>()
        .join(",");
    // Members of a cluster that exists are added one by one before they start.
    let exists = !installed.hosts.is_empty();
    let joining: Vec<Value> = members
        .iter()
        .filter(|m| exists && !installed.hosts.contains(m.name.as_str()))
        .map(|m| json!({"name": m.name.as_str(), "address": m.address.to_string()}))
        .collect();
    let containerd_major = manifest
        .entry("containerd")
        .and_then(|e| {
            e.version
                .split(['.', '~', '+', '-'])
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(1);
    let bundled: Vec<Value> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Image)
        .map(|e| json!({"reference": e.name, "file": e.path.trim_start_matches("images/")}))
        .collect();
    let pause = manifest
        .entries
        .iter()
        .find(|e| e.kind == Kind::Image && e.name.contains("/pause:"))
        .map(|e| e.name.clone())
        .ok_or_else(|| ClusterError::Setup("the bundle holds no pause image".into()))?;
    let mut images = addon_images(version);
    images["pause"] = json!(pause);
    images["bundled"] = json!(bundled);
    let mut node_services = vec!["kubelet", "kube-proxy"];
    if net.cni == crate::config::Cni::Bridge {
        node_services.push("kinit-routes");
    }
    let cni = match net.cni {
        crate::config::Cni::Bridge => "bridge",
        crate::config::Cni::Calico => "calico",
        crate::config::Cni::Flannel => "flannel",
    };
    let mut vars = BTreeMap::new();
    vars.insert("pki".into(), json!(pki_dir));
    vars.insert(
        "version".into(),
        json!({"major": version.major, "minor": version.minor, "patch": version.patch}),
    );
    vars.insert("flags".into(), version_flags(version));
    vars.insert(
        "network".into(),
        json!({
            "pod_cidr": net.pod_cidr.to_string(),
            "service_cidr": net.service_cidr.to_string(),
            "node_mask": net.node_cidr_mask_size,
            "dns_domain": net.dns_domain.to_string(),
            "dns_ip": cluster.dns_service_ip().map(|ip| ip.to_string()),
            "cni": cni,
        }),
    );
    vars.insert(
        "api".into(),
        json!({
            "external_url": topology::external_api_url(cluster),
            "node_local_balancer": topology::needs_node_local_balancer(cluster),
            "control_plane_addresses": cluster.control_planes().map(|h| h.address.to_string()).collect::<Vec<_>>(),
        }),
    );
    vars.insert(
        "etcd".into(),
        json!({"initial_cluster": initial_cluster, "token": format!("kinit-{}", cluster.name()), "joining": joining}),
    );
    vars.insert("images".into(), images);
    // The pod network's manifests are add-ons too, unless the standard plugins carry it.
    let mut addons = vec!["rbac", "coredns", "storage"];
    if net.cni != crate::config::Cni::Bridge {
        addons.push(cni);
    }
    vars.insert("addons".into(), json!(addons));
    vars.insert(
        "containerd".into(),
        json!({"config_version": if containerd_major >= 2 { 3 } else { 2 }}),
    );
    vars.insert(
        "ca_data".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(ca)),
    );
    vars.insert("node_services".into(), json!(node_services));
    let kinit = std::env::current_exe()
        .map_err(|e| ClusterError::Setup(format!("locating kinit itself: {e}")))?;
    vars.insert("kinit_binary".into(), json!(kinit));
    Ok(vars)
}

/// The inventory of a cluster run: roles as groups, `bootstrap` for the first control plane,
/// and each host's own PKI paths.
pub fn run_inventory(
    cluster: &Cluster,
    pki_dir: &Path,
    vars: BTreeMap<String, Value>,
    installed: &Installed,
) -> Inventory {
    let mut inventory = inventory::from_cluster(cluster, vars);
    let bootstrap = cluster.control_planes().next().map(|h| h.name.to_string());
    let exists = !installed.hosts.is_empty();
    for host in &mut inventory.hosts {
        if Some(&host.name) == bootstrap.as_ref() {
            host.groups.push("bootstrap".into());
        }
        host.vars.insert(
            "node_pki".into(),
            json!(pki_dir.join("pki/nodes").join(&host.name)),
        );
        host.vars.insert(
            "kubelet_conf".into(),
            json!(pki_dir.join(format!("kubelet-{}.conf", host.name))),
        );
        let joins = exists && !installed.hosts.contains(&host.name);
        host.vars.insert(
            "etcd_state".into(),
            json!(if joins { "existing" } else { "new" }),
        );
    }
    inventory
}

/// Runs the playbook `name` (kinit's, or the operator's from `--playbooks-dir`) on
/// `inventory`.
pub(crate) async fn run_playbook(
    assets: &Assets,
    name: &str,
    inventory: Inventory,
    run: RunOptions,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    let (file, source) = assets.playbook(name).map_err(ClusterError::Setup)?;
    let playbook =
        playbook::parse(&file, &source).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let templates = Templates::load(assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
    Runner::new(inventory, templates, run, sink)
        .run(&playbook)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))
}

/// Checks every host about to be touched; an error lists every finding.
pub async fn preflight(
    runner: &Runner,
    cluster: &Cluster,
    hosts: &[String],
    ignore: &[String],
) -> Result<preflight::Report, ClusterError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let gathered = runner.probe(hosts, preflight::SCRIPT).await;
    let report = preflight::judge(cluster, &gathered, now, ignore);
    if report.errors.is_empty() {
        Ok(report)
    } else {
        Err(ClusterError::Preflight(report.errors))
    }
}

/// Installs the cluster on every host (`init`), or adds `joining` hosts to it (`join`).
pub async fn install(
    cluster: &Cluster,
    options: ClusterRun,
    joining: Option<&str>,
    sink: Arc<dyn EventSink>,
) -> Result<(RunReport, preflight::Report), ClusterError> {
    let _lock = super::lock::acquire(
        &options.state,
        if joining.is_some() { "join" } else { "init" },
    )
    .map_err(|e| ClusterError::Setup(e.to_string()))?;
    let pki_dir = options.state.kubernetes();
    let mut installed = Installed::load(&options.state);
    // Versions change by `kinit upgrade apply` only: init must neither downgrade a cluster
    // nor upgrade it without the upgrade's order and health gates.
    if let Some(running) = installed.version.filter(|_| !installed.hosts.is_empty()) {
        let wanted = cluster.kubernetes_version;
        if wanted < running {
            return Err(ClusterError::Setup(format!(
                "the cluster runs Kubernetes {running}, the configuration says {wanted}: \
                 set kubernetesVersion: {running} (kinit does not downgrade)"
            )));
        }
        if wanted > running {
            return Err(ClusterError::Setup(format!(
                "the cluster runs Kubernetes {running}, the configuration says {wanted}: \
                 upgrade with `kinit upgrade apply {wanted}`, which drains and upgrades one node at a time"
            )));
        }
    }
    if let Some(node) = joining {
        let host = cluster.host(node).ok_or_else(|| {
            ClusterError::Setup(format!(
                "--node {node}: no host of that name in the configuration"
            ))
        })?;
        if installed.hosts.is_empty() {
            return Err(ClusterError::Setup(format!(
                "no cluster was installed from this configuration ({} holds no record); run `kinit init` first",
                options.state.root().display()
            )));
        }
        if host.has_role(Role::ControlPlane) && installed.hosts.contains(node) {
            tracing::info!("{node} is already part of the cluster; re-applying its configuration");
        }
    }
    certs::generate(
        cluster,
        &pki_dir,
        &kinit_pki::Placement::Cluster,
        time::OffsetDateTime::now_utc(),
    )?;
    let (bundle_dir, manifest) =
        unpacked_bundle(options.bundle.as_deref(), cluster.kubernetes_version)?;
    let vars = variables(cluster, &pki_dir, &manifest, &installed)?;
    let inventory = run_inventory(cluster, &pki_dir, vars, &installed);
    let (name, source) = options
        .assets
        .playbook("init")
        .map_err(ClusterError::Setup)?;
    let playbook =
        playbook::parse(&name, &source).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let templates =
        Templates::load(&options.assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let mut run = options.run;
    run.files = bundle_dir;
    // A worker joins alone (with the first control plane, which waits for it to be Ready). A
    // control plane changes every node's list of API servers, so the run covers all hosts: the
    // others see no change but their load balancer's.
    let joining_worker = joining.filter(|node| {
        cluster
            .host(node)
            .is_some_and(|h| !h.has_role(Role::ControlPlane))
    });
    if let Some(node) = joining_worker {
        let bootstrap = cluster
            .control_planes()
            .next()
            .map(|h| h.name.to_string())
            .unwrap_or_default();
        run.limit = Some(format!("{node},{bootstrap}"));
    }
    let targets: Vec<String> = match &run.limit {
        Some(limit) => inventory
            .select(limit)
            .iter()
            .map(|h| h.name.clone())
            .collect(),
        None => inventory.hosts.iter().map(|h| h.name.clone()).collect(),
    };
    // Preflight looks at hosts that are not yet kinit's; re-runs and resumes skip it.
    let fresh: Vec<String> = targets
        .iter()
        .filter(|h| !installed.hosts.contains(*h))
        .cloned()
        .collect();
    let resume = run.resume;
    let runner = Runner::new(inventory, templates, run, sink);
    let preflight_report = if resume || fresh.is_empty() {
        preflight::Report::default()
    } else {
        preflight(&runner, cluster, &fresh, &options.ignore_preflight).await?
    };
    let report = runner
        .run(&playbook)
        .await
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    if report.success() && !runner_dry_run(&runner) {
        installed.hosts.extend(targets);
        installed.version = Some(cluster.kubernetes_version);
        installed.save(&options.state)?;
    }
    Ok((report, preflight_report))
}

/// Removes what kinit installed from every host, or from `node`, and forgets them.
pub async fn reset(
    cluster: &Cluster,
    options: ClusterRun,
    node: Option<&str>,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    if let Some(node) = node
        && cluster.host(node).is_none()
    {
        return Err(ClusterError::Setup(format!(
            "--node {node}: no host of that name in the configuration"
        )));
    }
    let _lock = super::lock::acquire(&options.state, "reset")
        .map_err(|e| ClusterError::Setup(e.to_string()))?;
    reset_unlocked(cluster, options, node, sink).await
}

/// [`reset`] for operations that hold the cluster's lock already.
pub(crate) async fn reset_unlocked(
    cluster: &Cluster,
    options: ClusterRun,
    node: Option<&str>,
    sink: Arc<dyn EventSink>,
) -> Result<RunReport, ClusterError> {
    let mut vars = BTreeMap::new();
    vars.insert(
        "network".into(),
        json!({"pod_cidr": cluster.networking.pod_cidr.to_string()}),
    );
    let inventory = inventory::from_cluster(cluster, vars);
    let mut run = options.run;
    run.limit = node.map(str::to_owned);
    let dry_run = run.dry_run;
    let report = run_playbook(&options.assets, "reset", inventory, run, sink).await?;
    if report.success() && !dry_run {
        let mut installed = Installed::load(&options.state);
        match node {
            Some(node) => {
                installed.hosts.remove(node);
            }
            None => installed.hosts.clear(),
        }
        installed.save(&options.state)?;
        let _ = std::fs::remove_file(options.state.root().join("journal").join("init.json"));
    }
    Ok(report)
}

/// The cluster's health: hosts, services, nodes, etcd members.
pub async fn status(
    cluster: &Cluster,
    run: RunOptions,
    assets: &Assets,
) -> Result<super::status::ClusterStatus, ClusterError> {
    let inventory = inventory::from_cluster(cluster, BTreeMap::new());
    let templates = Templates::load(assets).map_err(|e| ClusterError::Setup(e.to_string()))?;
    let runner = Runner::new(
        inventory,
        templates,
        run,
        Arc::new(crate::engine::events::Silent),
    );
    Ok(super::status::status(cluster, &runner).await)
}

fn runner_dry_run(runner: &Runner) -> bool {
    runner.dry_run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_version() {
        let old = version_flags(KubernetesVersion::new(1, 20, 2));
        let new = version_flags(KubernetesVersion::new(1, 30, 2));
        assert_eq!(
            old,
            json!({"insecure_port": true, "component_port_zero": true})
        );
        assert_eq!(
            new,
            json!({"insecure_port": false, "component_port_zero": false})
        );
        assert_eq!(
            addon_images(KubernetesVersion::new(1, 20, 2))["coredns"],
            "k8s.gcr.io/coredns:1.7.0"
        );
    }

    /// A bundle manifest with what `variables` reads: the pause image and containerd.
    fn manifest(containerd: &str) -> Manifest {
        let entry = |name: &str, path: &str, kind: Kind, version: &str| crate::bundle::Entry {
            name: name.into(),
            path: path.into(),
            stored_path: format!("{path}.zst"),
            stored_sha256: String::new(),
            stored_size: 0,
            kind,
            version: version.into(),
            architecture: "amd64".into(),
            sha256: String::new(),
            size: 0,
            source: "test".into(),
        };
        Manifest {
            format_version: 1,
            kubernetes_version: "v1.20.2".into(),
            architecture: "amd64".into(),
            source: "test".into(),
            created: String::new(),
            entries: vec![
                entry("containerd", "bin/containerd", Kind::Binary, containerd),
                entry(
                    "k8s.gcr.io/pause:3.2",
                    "images/pause.tar",
                    Kind::Image,
                    "3.2",
                ),
            ],
        }
    }

    /// Renders the real templates for host `node` of a cluster of `version` with `cni`, as a
    /// run would (the run's variables, the host's own).
    fn render(version: &str, cni: &str, containerd: &str) -> BTreeMap<String, String> {
        let text = format!(
            "apiVersion: kinit.io/v1alpha1\nkind: Cluster\nmetadata: {{name: t}}\n\
             kubernetesVersion: {version}\n\
             hosts:\n  - {{name: node1, address: 10.0.0.11, roles: [control-plane]}}\n\
             \x20 - {{name: node2, address: 10.0.0.12, roles: [worker]}}\n\
             networking: {{podCIDR: 10.32.0.0/16, cni: {cni}}}\n"
        );
        let (cluster, problems) =
            crate::config::parse(&crate::yaml::Source::new("t.yaml", text)).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let pki = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(pki.path().join("pki")).unwrap();
        std::fs::write(pki.path().join("pki/ca.crt"), "CA").unwrap();
        let vars = variables(
            &cluster,
            pki.path(),
            &manifest(containerd),
            &Installed::default(),
        )
        .unwrap();
        let addons: Vec<String> = serde_json::from_value(vars["addons"].clone()).unwrap();
        let inventory = run_inventory(&cluster, pki.path(), vars, &Installed::default());
        let host = inventory.host("node1").unwrap();
        let mut context = serde_json::Map::from_iter(inventory.vars.clone());
        context.insert(
            "host".into(),
            json!({"name": host.name, "address": host.address(), "groups": host.groups, "vars": host.vars}),
        );
        context.insert("facts".into(), json!({"container": true}));
        let context = tera::Context::from_serialize(&context).unwrap();
        let templates = Templates::load(&Assets::default()).unwrap();
        let mut names = vec![
            "control-plane/kube-apiserver.service",
            "control-plane/kube-controller-manager.service",
            "control-plane/kube-scheduler.service",
            "containerd/config.toml",
            "kubelet/config.yaml",
            "kube-proxy/config.yaml",
            "etcd/etcd.service",
        ];
        let addon_names: Vec<String> = addons.iter().map(|a| format!("addons/{a}.yaml")).collect();
        names.extend(addon_names.iter().map(String::as_str));
        names
            .into_iter()
            .map(|name| (name.to_owned(), templates.render(name, &context).unwrap()))
            .collect()
    }

    #[test]
    fn templates_follow_the_kubernetes_version() {
        let old = render("v1.20.2", "bridge", "1.6.20");
        let new = render("v1.31.1", "bridge", "2.0.0");
        let apiserver = "control-plane/kube-apiserver.service";
        assert!(old[apiserver].contains("--insecure-port=0"));
        assert!(!new[apiserver].contains("--insecure-port"), "gone in v1.24");
        for component in ["kube-scheduler", "kube-controller-manager"] {
            let unit = format!("control-plane/{component}.service");
            assert!(old[&unit].contains("--port=0"), "{component} v1.20");
            assert!(!new[&unit].contains("--port=0"), "{component} v1.31");
        }
        // Both: the kubeadm flag set that does not change, and the systemd cgroup driver.
        for rendered in [&old, &new] {
            for flag in [
                "--service-account-issuer=",
                "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                "--service-cluster-ip-range=10.96.0.0/12",
            ] {
                assert!(rendered[apiserver].contains(flag), "{flag}");
            }
            assert!(rendered["kubelet/config.yaml"].contains("cgroupDriver: systemd"));
            assert!(rendered["containerd/config.toml"].contains("SystemdCgroup = true"));
            assert!(rendered["kube-proxy/config.yaml"].contains("mode: iptables"));
        }
        // containerd 2 reads configuration version 3, with the CRI plugin renamed.
        assert!(old["containerd/config.toml"].contains("version = 2"));
        assert!(new["containerd/config.toml"].contains("version = 3"));
        assert!(new["containerd/config.toml"].contains("io.containerd.cri.v1.runtime"));
    }

    #[test]
    fn pod_networks_are_add_on_manifests_with_the_cluster_network() {
        let bridge = render("v1.20.2", "bridge", "1.6.20");
        assert!(!bridge.contains_key("addons/flannel.yaml"));
        assert!(bridge["containerd/config.toml"].contains("conf_template"));
        for (cni, image) in [("flannel", "flannel/flannel:"), ("calico", "calico/node:")] {
            let rendered = render("v1.30.2", cni, "1.7.22");
            let manifest = &rendered[&format!("addons/{cni}.yaml")];
            assert!(manifest.contains("10.32.0.0/16"), "{cni}: the pod network");
            assert!(manifest.contains(image), "{cni}");
            assert!(
                !rendered["containerd/config.toml"].contains("conf_template"),
                "{cni} writes its own CNI configuration"
            );
            let documents: Vec<serde_json::Value> =
                crate::yaml::parse_all(&crate::yaml::Source::new(cni, manifest.clone()))
                    .unwrap_or_else(|e| panic!("{cni}: {e}"));
            assert!(documents.iter().all(|d| d["kind"].is_string()), "{cni}");
            assert!(
                documents.iter().any(|d| d["kind"] == "DaemonSet"),
                "{cni}: an agent on every node"
            );
        }
        let calico = render("v1.30.2", "calico", "1.7.22");
        let crds = calico["addons/calico.yaml"]
            .matches("kind: CustomResourceDefinition")
            .count();
        assert_eq!(crds, 18, "Calico's resource kinds");
    }
}
