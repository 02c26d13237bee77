//! The upstream source, for operators with internet access: release downloads from dl.k8s.io
//! and GitHub, each checked against the checksum its project publishes before it goes into a
//! bundle. `--mirror` points every download at a mirror with the same layout
//! (`MIRROR/dl.k8s.io/release/…`, `MIRROR/github.com/…`); `file://` mirrors are how the tests
//! exercise this path, since this project's machines have no internet.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Artifact, BundleError, Kind};
use crate::config::KubernetesVersion;

/// Versions of the components an upstream bundle carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub kubernetes: KubernetesVersion,
    pub etcd: String,
    pub containerd: String,
    pub runc: String,
    pub cni_plugins: String,
}

impl Versions {
    /// Releases known to work together with `kubernetes` (as kubeadm pins etcd per minor).
    pub fn for_kubernetes(kubernetes: KubernetesVersion) -> Versions {
        let etcd = match kubernetes.minor {
            0..=21 => "3.4.13",
            22..=25 => "3.5.6",
            26..=28 => "3.5.12",
            _ => "3.5.15",
        };
        Versions {
            kubernetes,
            etcd: etcd.into(),
            containerd: if kubernetes.minor >= 26 {
                "1.7.22"
            } else {
                "1.6.20"
            }
            .into(),
            runc: "1.1.14".into(),
            cni_plugins: "1.5.1".into(),
        }
    }
}

/// Downloads `url` to `dest` atomically: `http(s)://` with ureq, `file://` by copying.
pub fn download(url: &str, dest: &Path) -> Result<(), BundleError> {
    let failed = |e: String| BundleError::Source(format!("downloading {url}: {e}"));
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| failed(e.to_string()))?;
    }
    let partial = dest.with_extension("partial");
    let mut out =
        File::create(&partial).map_err(|e| failed(format!("{}: {e}", partial.display())))?;
    if let Some(path) = url.strip_prefix("file://") {
        let mut file = File::open(path).map_err(|e| failed(e.to_string()))?;
        io::copy(&mut file, &mut out).map_err(|e| failed(e.to_string()))?;
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let response = ureq::get(url).call().map_err(|e| failed(e.to_string()))?;
        let mut body = response.into_body().into_reader();
        io::copy(&mut body, &mut out).map_err(|e| failed(e.to_string()))?;
    } else {
        return Err(failed(
            "only http, https and file URLs are supported".into(),
        ));
    }
    out.sync_all().map_err(|e| failed(e.to_string()))?;
    fs::rename(&partial, dest).map_err(|e| failed(e.to_string()))
}

fn fetch_text(url: &str, scratch: &Path) -> Result<String, BundleError> {
    let file = scratch.join("checksum.txt");
    download(url, &file)?;
    let mut text = String::new();
    File::open(&file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| BundleError::Source(format!("{url}: {e}")))?;
    Ok(text)
}

/// The checksum a project published for `file_name`: either a bare digest (dl.k8s.io's
/// `.sha256` files) or `digest  name` lines (GitHub releases' sums files).
pub fn published_sha256(text: &str, file_name: &str) -> Option<String> {
    let is_digest = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let trimmed = text.trim();
    if is_digest(trimmed) {
        return Some(trimmed.to_ascii_lowercase());
    }
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let digest = fields.next()?;
        let name = fields
            .next()?
            .trim_start_matches('*')
            .trim_start_matches("./");
        (is_digest(digest) && name == file_name).then(|| digest.to_ascii_lowercase())
    })
}

/// Downloads `url` into `dir` and checks it against the digest published at `checksum_url`.
fn fetch_verified(url: &str, checksum_url: &str, dir: &Path) -> Result<PathBuf, BundleError> {
    let file_name = url.rsplit('/').next().unwrap_or("download").to_owned();
    let dest = dir.join(&file_name);
    let published = fetch_text(checksum_url, dir)?;
    let expected = published_sha256(&published, &file_name).ok_or_else(|| {
        BundleError::Source(format!(
            "{checksum_url} publishes no sha256 for {file_name}"
        ))
    })?;
    download(url, &dest)?;
    let (actual, _) = super::sha256_file(&dest)?;
    if actual != expected {
        let _ = fs::remove_file(&dest);
        return Err(BundleError::Source(format!(
            "{url}: sha256 {actual} does not match the published {expected} ({checksum_url})"
        )));
    }
    Ok(dest)
}

/// Unpacks the files of a .tar.gz whose names end with one of `wanted` into `dir`.
fn unpack(tarball: &Path, dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, BundleError> {
    let fail = |e: io::Error| BundleError::Source(format!("{}: {e}", tarball.display()));
    let file = File::open(tarball).map_err(fail)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(fail)?.to_string_lossy().into_owned();
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        if wanted.is_empty() || wanted.contains(&name.as_str()) {
            let out = dir.join(&name);
            let mut file = File::create(&out).map_err(fail)?;
            io::copy(&mut entry, &mut file).map_err(fail)?;
            found.push(out);
        }
    }
    for name in wanted {
        if !found.iter().any(|p| p.ends_with(name)) {
            return Err(BundleError::Source(format!(
                "{} has no {name}",
                tarball.display()
            )));
        }
    }
    found.sort();
    Ok(found)
}

/// Rewrites `https://host/path` to `MIRROR/host/path` when a mirror is given.
fn url(mirror: Option<&str>, https: &str) -> String {
    match mirror {
        Some(mirror) => format!(
            "{}/{}",
            mirror.trim_end_matches('/'),
            https.trim_start_matches("https://")
        ),
        None => https.to_owned(),
    }
}

/// Downloads and checks every upstream artifact into `dir` (images are not included: the
/// caller adds the locally built pause image).
pub fn artifacts(
    versions: &Versions,
    mirror: Option<&str>,
    dir: &Path,
) -> Result<Vec<Artifact>, BundleError> {
    fs::create_dir_all(dir).map_err(|e| BundleError::Source(format!("{}: {e}", dir.display())))?;
    let mut artifacts = Vec::new();
    let k8s = versions.kubernetes.to_string();
    let binaries = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "kubeadm",
    ];
    for binary in binaries {
        let download_url = url(
            mirror,
            &format!("https://dl.k8s.io/release/{k8s}/bin/linux/amd64/{binary}"),
        );
        let file = fetch_verified(&download_url, &format!("{download_url}.sha256"), dir)?;
        artifacts.push(Artifact {
            name: binary.into(),
            kind: Kind::Binary,
            version: k8s.clone(),
            source: download_url,
            file,
        });
    }

    let staged = |name: &str| dir.join(name);
    let mut add_all = |files: Vec<PathBuf>, kind: Kind, version: &str, source: &str| {
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            artifacts.push(Artifact {
                name,
                kind,
                version: version.into(),
                source: source.into(),
                file,
            });
        }
    };

    let etcd = &versions.etcd;
    let base = format!("https://github.com/etcd-io/etcd/releases/download/v{etcd}");
    let tarball_url = url(mirror, &format!("{base}/etcd-v{etcd}-linux-amd64.tar.gz"));
    let tarball = fetch_verified(
        &tarball_url,
        &url(mirror, &format!("{base}/SHA256SUMS")),
        dir,
    )?;
    let unpacked = staged("etcd");
    fs::create_dir_all(&unpacked).map_err(|e| BundleError::Source(e.to_string()))?;
    add_all(
        unpack(&tarball, &unpacked, &["etcd", "etcdctl"])?,
        Kind::Binary,
        etcd,
        &tarball_url,
    );

    let containerd = &versions.containerd;
    let tarball_url = url(
        mirror,
        &format!(
            "https://github.com/containerd/containerd/releases/download/v{containerd}/containerd-{containerd}-linux-amd64.tar.gz"
        ),
    );
    let tarball = fetch_verified(&tarball_url, &format!("{tarball_url}.sha256sum"), dir)?;
    let unpacked = staged("containerd");
    fs::create_dir_all(&unpacked).map_err(|e| BundleError::Source(e.to_string()))?;
    add_all(
        unpack(
            &tarball,
            &unpacked,
            &["containerd", "containerd-shim-runc-v2", "ctr"],
        )?,
        Kind::Binary,
        containerd,
        &tarball_url,
    );

    let runc = &versions.runc;
    let base = format!("https://github.com/opencontainers/runc/releases/download/v{runc}");
    let runc_url = url(mirror, &format!("{base}/runc.amd64"));
    let downloaded = fetch_verified(
        &runc_url,
        &url(mirror, &format!("{base}/runc.sha256sum")),
        dir,
    )?;
    let renamed = staged("runc");
    fs::rename(&downloaded, &renamed).map_err(|e| BundleError::Source(e.to_string()))?;
    add_all(vec![renamed], Kind::Binary, runc, &runc_url);

    let cni = &versions.cni_plugins;
    let tarball_url = url(
        mirror,
        &format!(
            "https://github.com/containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-amd64-v{cni}.tgz"
        ),
    );
    let tarball = fetch_verified(&tarball_url, &format!("{tarball_url}.sha256"), dir)?;
    let unpacked = staged("cni");
    fs::create_dir_all(&unpacked).map_err(|e| BundleError::Source(e.to_string()))?;
    add_all(
        unpack(&tarball, &unpacked, &[])?,
        Kind::CniPlugin,
        cni,
        &tarball_url,
    );
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o755);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *contents).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// A mirror laid out like dl.k8s.io and GitHub releases, with published checksums.
    fn mirror(root: &Path, versions: &Versions) {
        let put = |path: String, bytes: &[u8]| {
            let full = root.join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, bytes).unwrap();
        };
        let k8s = versions.kubernetes.to_string();
        for binary in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubectl",
            "kubeadm",
        ] {
            let body = format!("#!/bin/sh\necho {binary} {k8s}\n");
            let path = format!("dl.k8s.io/release/{k8s}/bin/linux/amd64/{binary}");
            put(format!("{path}.sha256"), sha(body.as_bytes()).as_bytes());
            put(path, body.as_bytes());
        }
        let etcd = &versions.etcd;
        let dir = format!("etcd-v{etcd}-linux-amd64");
        let archive = tgz(&[
            (&format!("{dir}/etcd"), b"etcd"),
            (&format!("{dir}/etcdctl"), b"etcdctl"),
            (&format!("{dir}/README.md"), b"doc"),
        ]);
        let base = format!("github.com/etcd-io/etcd/releases/download/v{etcd}");
        put(
            format!("{base}/SHA256SUMS"),
            format!(
                "{}  other.tar.gz\n{}  {dir}.tar.gz\n",
                sha(b"x"),
                sha(&archive)
            )
            .as_bytes(),
        );
        put(format!("{base}/{dir}.tar.gz"), &archive);
        let c = &versions.containerd;
        let archive = tgz(&[
            ("bin/containerd", b"c"),
            ("bin/containerd-shim-runc-v2", b"s"),
            ("bin/ctr", b"ctr"),
        ]);
        let path = format!(
            "github.com/containerd/containerd/releases/download/v{c}/containerd-{c}-linux-amd64.tar.gz"
        );
        put(
            format!("{path}.sha256sum"),
            format!("{}  containerd-{c}-linux-amd64.tar.gz\n", sha(&archive)).as_bytes(),
        );
        put(path, &archive);
        let r = &versions.runc;
        let base = format!("github.com/opencontainers/runc/releases/download/v{r}");
        put(
            format!("{base}/runc.sha256sum"),
            format!(
                "{}  runc.arm64\n{}  runc.amd64\n",
                sha(b"arm"),
                sha(b"runc")
            )
            .as_bytes(),
        );
        put(format!("{base}/runc.amd64"), b"runc");
        let p = &versions.cni_plugins;
        let archive = tgz(&[
            ("./bridge", b"bridge"),
            ("./host-local", b"hl"),
            ("./loopback", b"lo"),
        ]);
        let path = format!(
            "github.com/containernetworking/plugins/releases/download/v{p}/cni-plugins-linux-amd64-v{p}.tgz"
        );
        put(
            format!("{path}.sha256"),
            format!("{}  cni-plugins-linux-amd64-v{p}.tgz\n", sha(&archive)).as_bytes(),
        );
        put(path, &archive);
    }

    #[test]
    fn published_checksums_in_both_formats() {
        let digest = "a".repeat(64);
        assert_eq!(
            published_sha256(&format!("{digest}\n"), "x"),
            Some(digest.clone())
        );
        let lines = format!("{}  other\n{digest} *runc.amd64\n", "b".repeat(64));
        assert_eq!(published_sha256(&lines, "runc.amd64"), Some(digest));
        assert_eq!(published_sha256("nonsense", "x"), None);
    }

    #[test]
    fn downloads_from_a_mirror_with_checksums() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        let versions = Versions::for_kubernetes("v1.30.2".parse().unwrap());
        mirror(&root, &versions);
        let mirror_url = format!("file://{}", root.display());
        let artifacts = artifacts(&versions, Some(&mirror_url), &tmp.path().join("stage")).unwrap();
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        for expected in [
            "kube-apiserver",
            "kubelet",
            "kubectl",
            "etcd",
            "etcdctl",
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "runc",
            "bridge",
            "host-local",
            "loopback",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(!names.contains(&"README.md"));
        let kubelet = artifacts.iter().find(|a| a.name == "kubelet").unwrap();
        assert_eq!(
            fs::read_to_string(&kubelet.file).unwrap(),
            "#!/bin/sh\necho kubelet v1.30.2\n"
        );
        assert!(
            kubelet
                .source
                .ends_with("dl.k8s.io/release/v1.30.2/bin/linux/amd64/kubelet")
        );
        assert_eq!(
            artifacts.iter().find(|a| a.name == "runc").unwrap().version,
            "1.1.14"
        );

        // The bundle made from them verifies.
        let bundle = tmp.path().join("upstream.tar");
        super::super::create(&bundle, &artifacts, "v1.30.2", "upstream").unwrap();
        super::super::verify(&bundle).unwrap();
    }

    #[test]
    fn a_tampered_download_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        let versions = Versions::for_kubernetes("v1.30.2".parse().unwrap());
        mirror(&root, &versions);
        fs::write(
            root.join("dl.k8s.io/release/v1.30.2/bin/linux/amd64/kube-scheduler"),
            b"evil",
        )
        .unwrap();
        let err = artifacts(
            &versions,
            Some(&format!("file://{}", root.display())),
            &tmp.path().join("stage"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("kube-scheduler") && err.contains("does not match the published"),
            "{err}"
        );
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(download("ftp://example/x", &tmp.path().join("x")).is_err());
    }
}
