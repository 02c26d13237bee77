//! Where kinit keeps a cluster's state on the operator's machine: by default a `.kinit/<name>`
//! directory beside the configuration file, holding the cluster's `/etc/kubernetes` mirror
//! (PKI and kubeconfigs), run journals and backups. Every command can be pointed elsewhere.

use std::path::{Path, PathBuf};

/// kinit's own directory for the operator: `$KINIT_HOME`, else `~/.kinit`. It holds kinit's
/// known_hosts and the labs.
pub fn kinit_home() -> PathBuf {
    if let Some(home) = std::env::var_os("KINIT_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kinit")
}

/// Where expensive products (node images, Kubernetes builds, bundles) are cached, keyed by
/// their inputs: `$KINIT_CACHE`, else `/var/cache/kinit` for root and `~/.cache/kinit` for others.
pub fn cache_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os("KINIT_CACHE") {
        return PathBuf::from(cache);
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home != Path::new("/root") => home.join(".cache/kinit"),
        _ => PathBuf::from("/var/cache/kinit"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The default: `.kinit/<cluster name>` in the configuration file's directory.
    pub fn beside(config_path: &Path, cluster_name: &str) -> StateDir {
        let dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        StateDir::new(dir.join(".kinit").join(cluster_name))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster's copy of `/etc/kubernetes`: kubeconfigs and `pki/`.
    pub fn kubernetes(&self) -> PathBuf {
        self.root.join("kubernetes")
    }
}
