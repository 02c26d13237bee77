//! The lab source: every artifact from Debian bookworm, with nothing downloaded from outside
//! Debian's archive. Binaries come from Debian's packages (`apt-get download`, unpacked with
//! `dpkg-deb`); the Kubernetes server binaries are built from Debian's `kubernetes` source
//! package with Debian's Go (about 6 minutes on 2 cores, once per source and version); the
//! pause and busybox images are assembled locally. Each product is cached by its inputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::upstream::download;
use super::{Artifact, BundleError, DockerArchive, ImageFile, Kind};
use crate::config::KubernetesVersion;

const BUILD_KUBERNETES: &str = include_str!("../../lab/build-kubernetes.sh");
const PAUSE_C: &str = include_str!("../../lab/pause.c");

/// Debian's `kubernetes` source: the upstream v1.20.2 tree, as testbed.md records it.
const KUBERNETES_SOURCE: &str = "pool/main/k/kubernetes/kubernetes_1.20.5+really1.20.2.orig.tar.gz";
const KUBERNETES_SOURCE_SHA256: &str =
    "b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc";
pub const SOURCE_VERSION: KubernetesVersion = KubernetesVersion::new(1, 20, 2);

/// The pause image reference of Kubernetes 1.20 and the lab's test image.
pub const PAUSE_IMAGE: &str = "k8s.gcr.io/pause:3.2";
pub const BUSYBOX_IMAGE: &str = "kinit.io/busybox:1.35";

/// Debian packages and the files each contributes.
const PACKAGES: &[(&str, &[(&str, Kind)])] = &[
    ("etcd-server", &[("usr/bin/etcd", Kind::Binary)]),
    ("etcd-client", &[("usr/bin/etcdctl", Kind::Binary)]),
    (
        "containerd",
        &[
            ("usr/bin/containerd", Kind::Binary),
            ("usr/bin/containerd-shim-runc-v2", Kind::Binary),
            ("usr/bin/ctr", Kind::Binary),
        ],
    ),
    ("runc", &[("usr/sbin/runc", Kind::Binary)]),
    (
        "containernetworking-plugins",
        &[("usr/lib/cni", Kind::CniPlugin)],
    ),
];
const KUBERNETES_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
];

fn mirror() -> String {
    std::env::var("KINIT_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

fn run(command: &mut Command, what: &str) -> Result<String, BundleError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BundleError::Source(format!("{what}: {e}")))?;
    if !output.status.success() {
        return Err(BundleError::Source(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A Debian package fetched into the cache and unpacked.
struct Package {
    name: String,
    version: String,
    file_name: String,
    unpacked: PathBuf,
}

/// Fetches the candidate version of `name` unless the cache has it, and unpacks it.
fn package(cache: &Path, name: &str) -> Result<Package, BundleError> {
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", name]),
        &format!("apt-cache show {name}"),
    )?;
    let field = |key: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .ok_or_else(|| {
                BundleError::Source(format!(
                    "apt-cache show {name}: no {key} field; run apt-get update"
                ))
            })
    };
    let version = field("Version:")?;
    let architecture = field("Architecture:")?;
    // apt-get download's naming: the epoch's colon is escaped, unlike in the pool's file name.
    let file_name = format!("{name}_{}_{architecture}.deb", version.replace(':', "%3a"));
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)
        .map_err(|e| BundleError::Source(format!("{}: {e}", debs.display())))?;
    let deb = debs.join(&file_name);
    if !deb.is_file() {
        eprintln!("[bundle] downloading {name} {version}");
        run(
            Command::new("apt-get")
                .arg("download")
                .arg(name)
                .current_dir(&debs),
            &format!("apt-get download {name}"),
        )?;
        if !deb.is_file() {
            return Err(BundleError::Source(format!(
                "apt-get download {name} did not write {file_name}"
            )));
        }
    }
    let unpacked = debs
        .join("unpacked")
        .join(file_name.trim_end_matches(".deb"));
    if !unpacked.join(".kinit-unpacked").is_file() {
        let _ = fs::remove_dir_all(&unpacked);
        fs::create_dir_all(&unpacked).map_err(|e| BundleError::Source(e.to_string()))?;
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
            &format!("dpkg-deb -x {file_name}"),
        )?;
        fs::write(unpacked.join(".kinit-unpacked"), b"")
            .map_err(|e| BundleError::Source(e.to_string()))?;
    }
    Ok(Package {
        name: name.to_owned(),
        version,
        file_name,
        unpacked,
    })
}

/// The Kubernetes binaries of `version`, built from Debian's source unless cached.
pub fn kubernetes_binaries(
    cache: &Path,
    version: KubernetesVersion,
) -> Result<PathBuf, BundleError> {
    let key = &KUBERNETES_SOURCE_SHA256[..12];
    // Other versions are the same source stamped; "stamped" names the build that really
    // carries the stamp (an earlier script left v1.20.2's in binaries called otherwise).
    let out = if version == SOURCE_VERSION {
        cache.join("kubernetes").join(format!("{key}-{version}"))
    } else {
        cache
            .join("kubernetes")
            .join(format!("{key}-{version}-stamped"))
    };
    if out.join("kubelet").is_file() {
        return Ok(out);
    }
    crate::lab::ensure_host_packages(&[
        ("/usr/lib/go-1.19/bin/go", "golang-1.19-go"),
        ("make", "make"),
        ("rsync", "rsync"),
    ])
    .map_err(|e| BundleError::Source(e.to_string()))?;
    let source = cache
        .join("src")
        .join(KUBERNETES_SOURCE.rsplit('/').next().unwrap_or_default());
    let verified = source.is_file()
        && super::sha256_file(&source)
            .map(|(sha, _)| sha == KUBERNETES_SOURCE_SHA256)
            .unwrap_or(false);
    if !verified {
        let url = format!("{}/{KUBERNETES_SOURCE}", mirror());
        eprintln!("[bundle] downloading Debian's kubernetes source ({url})");
        download(&url, &source)?;
        let (sha, _) = super::sha256_file(&source)?;
        if sha != KUBERNETES_SOURCE_SHA256 {
            let _ = fs::remove_file(&source);
            return Err(BundleError::Source(format!(
                "{url}: sha256 {sha}, expected {KUBERNETES_SOURCE_SHA256}; the mirror serves a different file"
            )));
        }
    }
    let script = cache.join("kubernetes").join("build-kubernetes.sh");
    fs::create_dir_all(cache.join("kubernetes")).map_err(|e| BundleError::Source(e.to_string()))?;
    fs::write(&script, BUILD_KUBERNETES).map_err(|e| BundleError::Source(e.to_string()))?;
    let tree = cache.join("kubernetes").join(format!("src-{key}"));
    let log = cache
        .join("kubernetes")
        .join(format!("build-{version}.log"));
    eprintln!(
        "[bundle] building Kubernetes {version} from Debian's source (about 6 minutes on 2 cores, once; log: {})",
        log.display()
    );
    let log_file = fs::File::create(&log)
        .map_err(|e| BundleError::Source(format!("{}: {e}", log.display())))?;
    let status = Command::new("bash")
        .arg(&script)
        .arg(&source)
        .arg(&tree)
        .arg(&out)
        .arg(version.to_string())
        .stdout(
            log_file
                .try_clone()
                .map_err(|e| BundleError::Source(e.to_string()))?,
        )
        .stderr(log_file)
        .status()
        .map_err(|e| BundleError::Source(format!("bash: {e}")))?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        return Err(BundleError::Source(format!(
            "building Kubernetes {version} failed; last lines of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(out)
}

/// Compiles kubernetes' pause.c statically (as its Makefile does) into `dir/pause`.
pub fn build_pause(dir: &Path) -> Result<PathBuf, BundleError> {
    let key = hex::encode(Sha256::digest(PAUSE_C))[..12].to_owned();
    let binary = dir.join(format!("pause-{key}"));
    if binary.is_file() {
        return Ok(binary);
    }
    crate::lab::ensure_host_packages(&[("gcc", "gcc")])
        .map_err(|e| BundleError::Source(e.to_string()))?;
    fs::create_dir_all(dir).map_err(|e| BundleError::Source(e.to_string()))?;
    let source = dir.join("pause.c");
    fs::write(&source, PAUSE_C).map_err(|e| BundleError::Source(e.to_string()))?;
    let partial = binary.with_extension("partial");
    run(
        Command::new("gcc")
            .args([
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                "-DVERSION=v3.2-kinit",
                "-o",
            ])
            .arg(&partial)
            .arg(&source),
        "gcc pause.c",
    )?;
    fs::rename(&partial, &binary).map_err(|e| BundleError::Source(e.to_string()))?;
    Ok(binary)
}

/// The pause image: the static pause binary as `/pause`.
pub fn pause_image(pause: &Path, output: &Path) -> Result<(), BundleError> {
    let contents =
        fs::read(pause).map_err(|e| BundleError::Source(format!("{}: {e}", pause.display())))?;
    DockerArchive {
        reference: PAUSE_IMAGE.into(),
        files: vec![ImageFile::Regular {
            path: "pause".into(),
            contents,
            mode: 0o755,
        }],
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
    }
    .write(output)
    .map(drop)
}

/// The test image: Debian's static busybox with a link for each applet.
fn busybox_image(busybox: &Path, output: &Path) -> Result<(), BundleError> {
    let contents = fs::read(busybox)
        .map_err(|e| BundleError::Source(format!("{}: {e}", busybox.display())))?;
    let applets = run(Command::new(busybox).arg("--list"), "busybox --list")?;
    let mut files = vec![
        ImageFile::Directory { path: "bin".into() },
        ImageFile::Directory { path: "tmp".into() },
        ImageFile::Directory { path: "etc".into() },
        ImageFile::Regular {
            path: "bin/busybox".into(),
            contents,
            mode: 0o755,
        },
        ImageFile::Regular {
            path: "etc/passwd".into(),
            contents: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
                .to_vec(),
            mode: 0o644,
        },
    ];
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        files.push(ImageFile::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    DockerArchive {
        reference: BUSYBOX_IMAGE.into(),
        files,
        entrypoint: vec![],
        cmd: vec!["sh".into()],
    }
    .write(output)
    .map(drop)
}

/// Everything the lab source puts into a bundle, built or fetched as needed.
pub fn artifacts(cache: &Path, version: KubernetesVersion) -> Result<Vec<Artifact>, BundleError> {
    crate::lab::ensure_host_packages(&[("apt-get", "apt"), ("dpkg-deb", "dpkg")])
        .map_err(|e| BundleError::Source(e.to_string()))?;
    let mut artifacts = Vec::new();
    for (name, files) in PACKAGES {
        let package = package(cache, name)?;
        for (path, kind) in *files {
            let source = format!(
                "Debian bookworm package {} {} ({})",
                package.name, package.version, package.file_name
            );
            let full = package.unpacked.join(path);
            let mut add = |file: PathBuf| {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                artifacts.push(Artifact {
                    name,
                    kind: *kind,
                    version: package.version.clone(),
                    source: source.clone(),
                    file,
                });
            };
            if full.is_dir() {
                let mut plugins: Vec<PathBuf> = fs::read_dir(&full)
                    .map_err(|e| BundleError::Source(format!("{}: {e}", full.display())))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                plugins.sort();
                plugins.into_iter().for_each(&mut add);
            } else if full.is_file() {
                add(full);
            } else {
                return Err(BundleError::Source(format!(
                    "{} has no {path}",
                    package.file_name
                )));
            }
        }
    }
    let kubernetes = kubernetes_binaries(cache, version)?;
    for binary in KUBERNETES_BINARIES {
        artifacts.push(Artifact {
            name: (*binary).into(),
            kind: Kind::Binary,
            version: version.to_string(),
            source: format!(
                "built from Debian bookworm source package kubernetes 1.20.5+really1.20.2 (orig sha256 {}) with golang-1.19",
                &KUBERNETES_SOURCE_SHA256[..12]
            ),
            file: kubernetes.join(binary),
        });
    }
    let images = cache.join("images");
    let pause = build_pause(&images)?;
    let pause_archive = images.join("pause.tar");
    pause_image(&pause, &pause_archive)?;
    artifacts.push(Artifact {
        name: PAUSE_IMAGE.into(),
        kind: Kind::Image,
        version: "3.2".into(),
        source: "kubernetes build/pause/linux/pause.c compiled with gcc -Os -static".into(),
        file: pause_archive,
    });
    let busybox = package(cache, "busybox-static")?;
    let busybox_archive = images.join("busybox.tar");
    busybox_image(&busybox.unpacked.join("bin/busybox"), &busybox_archive)?;
    artifacts.push(Artifact {
        name: BUSYBOX_IMAGE.into(),
        kind: Kind::Image,
        version: busybox.version.clone(),
        source: format!(
            "Debian bookworm package busybox-static {} ({})",
            busybox.version, busybox.file_name
        ),
        file: busybox_archive,
    });
    Ok(artifacts)
}

/// A cache key for the bundle of these artifacts: their names, versions and sources, which
/// name every input (Debian package files, the source checksum, the stamped version).
pub fn cache_key(artifacts: &[Artifact]) -> String {
    let mut hash = Sha256::new();
    hash.update(super::FORMAT_VERSION.to_le_bytes());
    hash.update(PAUSE_C);
    for artifact in artifacts {
        hash.update(format!(
            "{}\0{}\0{}\0{}\n",
            artifact.name, artifact.kind, artifact.version, artifact.source
        ));
    }
    hex::encode(hash.finalize())[..16].to_owned()
}

/// The newest lab bundle of `version` already in the cache, without checking Debian for
/// newer packages.
pub fn cached(cache: &Path, version: KubernetesVersion) -> Option<PathBuf> {
    let prefix = format!("kinit-{version}-lab-");
    let entries = fs::read_dir(cache.join("bundles")).ok()?;
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".tar")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Builds (or finds in the cache) the lab bundle for `version`; returns its path.
pub fn bundle(cache: &Path, version: KubernetesVersion) -> Result<PathBuf, BundleError> {
    let artifacts = artifacts(cache, version)?;
    let key = cache_key(&artifacts);
    let path = cache
        .join("bundles")
        .join(format!("kinit-{version}-lab-{key}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("[bundle] writing {}", path.display());
    super::create(&path, &artifacts, &version.to_string(), "lab")?;
    Ok(path)
}
