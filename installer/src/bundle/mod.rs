//! Offline bundles: one file that carries every binary and image kinit installs, with a
//! manifest of their names, versions, sizes, checksums and origins.
//!
//! A bundle is a tar stream, compressed with zstd (gzip and plain tar are read too), whose
//! first entry is `manifest.json`. Verification streams every entry through SHA-256 and
//! compares it with the manifest, so a corrupted or truncated bundle is rejected with the name
//! of the bad entry, and never needs to be unpacked to be checked.

mod image;
pub mod lab;
pub mod upstream;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use image::{DockerArchive, ImageFile};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT_VERSION: u32 = 1;

/// What an entry is, which decides where it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An executable for `/usr/local/bin`.
    Binary,
    /// A CNI plugin for the CNI binary directory.
    CniPlugin,
    /// A container image as a docker archive, imported into containerd.
    Image,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Binary => "binary",
            Kind::CniPlugin => "cni-plugin",
            Kind::Image => "image",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The component: `kube-apiserver`, `bridge`, or an image reference such as `k8s.gcr.io/pause:3.2`.
    pub name: String,
    /// Path inside the bundle.
    pub path: String,
    pub kind: Kind,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
    /// Where it came from: a download URL, a Debian package, a local build.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub kubernetes_version: String,
    pub architecture: String,
    /// How the bundle was made: `lab`, `directory`, `upstream`.
    pub source: String,
    pub created: String,
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Versions by component, for upgrade planning and `bundle inspect`.
    pub fn versions(&self) -> BTreeMap<&str, &str> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.version.as_str()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{bundle}: {message}")]
    Invalid { bundle: PathBuf, message: String },
    /// A specific entry is bad: the message names it.
    #[error("{bundle}: entry {entry}: {message}")]
    BadEntry {
        bundle: PathBuf,
        entry: String,
        message: String,
    },
    #[error("{0}")]
    Source(String),
}

/// A file to put into a bundle, with what the manifest says about it.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    pub source: String,
    /// The file on disk.
    pub file: PathBuf,
}

impl Artifact {
    /// The entry's path inside the bundle.
    pub fn bundle_path(&self) -> String {
        let file_name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.kind {
            Kind::Binary => format!("bin/{file_name}"),
            Kind::CniPlugin => format!("cni/{file_name}"),
            Kind::Image => format!("images/{file_name}"),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Artifacts from a directory laid out like an unpacked bundle: `bin/` (binaries),
/// `cni/` (CNI plugins) and `images/` (docker archives). Versions come from an optional
/// `versions.json` (`{"etcd": "3.5.15", …}`); Kubernetes binaries default to
/// `kubernetes_version`, images to the tag of their reference.
pub fn directory_artifacts(
    dir: &Path,
    kubernetes_version: &str,
) -> Result<Vec<Artifact>, BundleError> {
    let versions: BTreeMap<String, String> = match fs::read(dir.join("versions.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            BundleError::Source(format!("{}: {e}", dir.join("versions.json").display()))
        })?,
        Err(_) => BTreeMap::new(),
    };
    let mut artifacts = Vec::new();
    for (sub, kind) in [
        ("bin", Kind::Binary),
        ("cni", Kind::CniPlugin),
        ("images", Kind::Image),
    ] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = match kind {
                Kind::Image => image_reference(&file)?,
                _ => file_name.clone(),
            };
            let version = versions.get(&name).cloned().unwrap_or_else(|| match kind {
                _ if name.starts_with("kube") => kubernetes_version.to_owned(),
                Kind::Image => name.rsplit(':').next().unwrap_or("unknown").to_owned(),
                _ => "unknown".to_owned(),
            });
            artifacts.push(Artifact {
                name,
                kind,
                version,
                source: format!("local file {}", file.display()),
                file,
            });
        }
    }
    if artifacts.is_empty() {
        return Err(BundleError::Source(format!(
            "{} has no bin/, cni/ or images/ files to bundle",
            dir.display()
        )));
    }
    Ok(artifacts)
}

/// The first tag of a docker archive (its `manifest.json`'s `RepoTags`).
fn image_reference(archive: &Path) -> Result<String, BundleError> {
    let fail = |message: String| BundleError::Source(format!("{}: {message}", archive.display()));
    let file = File::open(archive).map_err(|e| fail(e.to_string()))?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().map_err(|e| fail(e.to_string()))? {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        if entry
            .path()
            .map(|p| p == Path::new("manifest.json"))
            .unwrap_or(false)
        {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| fail(e.to_string()))?;
            let manifest: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
            return manifest[0]["RepoTags"][0]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| fail("its manifest.json names no tag".into()));
        }
    }
    Err(fail("not a docker archive (no manifest.json)".into()))
}

/// Streams a file through SHA-256, returning the hex digest and size.
pub fn sha256_file(path: &Path) -> Result<(String, u64), BundleError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hash = Sha256::new();
    let size = io::copy(&mut file, &mut HashWriter(&mut hash)).map_err(io_error(path))?;
    Ok((hex::encode(hash.finalize()), size))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a bundle of `artifacts` to `output` (zstd-compressed tar), atomically.
pub fn create(
    output: &Path,
    artifacts: &[Artifact],
    kubernetes_version: &str,
    source: &str,
) -> Result<Manifest, BundleError> {
    let mut entries = Vec::new();
    for artifact in artifacts {
        let (sha256, size) = sha256_file(&artifact.file)?;
        entries.push(Entry {
            name: artifact.name.clone(),
            path: artifact.bundle_path(),
            kind: artifact.kind,
            version: artifact.version.clone(),
            architecture: "amd64".into(),
            sha256,
            size,
            source: artifact.source.clone(),
        });
    }
    let mut paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    if let Some(pair) = paths.windows(2).find(|w| w[0] == w[1]) {
        return Err(BundleError::Source(format!(
            "two artifacts would be stored as {}",
            pair[0]
        )));
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kubernetes_version: kubernetes_version.into(),
        architecture: "amd64".into(),
        source: source.into(),
        created: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        entries,
    };

    let partial = output.with_extension("partial");
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let file = File::create(&partial).map_err(io_error(&partial))?;
    let mut encoder = zstd::Encoder::new(file, 3).map_err(io_error(&partial))?;
    encoder.include_checksum(true).map_err(io_error(&partial))?;
    // Both cores: compression dominates the time of building a bundle.
    encoder
        .multithread(std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .map_err(io_error(&partial))?;
    let mut builder = tar::Builder::new(encoder);
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("serialisable");
    let mut header = tar_header(manifest_json.len() as u64, 0o644);
    builder
        .append_data(&mut header, MANIFEST, manifest_json.as_slice())
        .map_err(io_error(&partial))?;
    for (artifact, entry) in artifacts.iter().zip(&manifest.entries) {
        let file = File::open(&artifact.file).map_err(io_error(&artifact.file))?;
        let mode = if entry.kind == Kind::Image {
            0o644
        } else {
            0o755
        };
        let mut header = tar_header(entry.size, mode);
        builder
            .append_data(&mut header, &entry.path, file)
            .map_err(io_error(&artifact.file))?;
    }
    let encoder = builder.into_inner().map_err(io_error(&partial))?;
    let file = encoder.finish().map_err(io_error(&partial))?;
    file.sync_all().map_err(io_error(&partial))?;
    fs::rename(&partial, output).map_err(io_error(output))?;
    Ok(manifest)
}

/// A header with fixed owner and time, so equal inputs give equal bundles.
fn tar_header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Opens a bundle's tar stream, whatever its compression.
fn open_stream(bundle: &Path) -> Result<Box<dyn Read>, BundleError> {
    let mut file = BufReader::new(File::open(bundle).map_err(io_error(bundle))?);
    let mut magic = [0u8; 4];
    let read = read_up_to(&mut file, &mut magic).map_err(io_error(bundle))?;
    let head = io::Cursor::new(magic[..read].to_vec()).chain(file);
    Ok(match magic {
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(head).map_err(io_error(bundle))?),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(head)),
        _ => Box::new(head),
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads a bundle's manifest (its first entry) without reading the rest.
pub fn read_manifest(bundle: &Path) -> Result<Manifest, BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: bundle.to_owned(),
        message,
    };
    let mut archive = tar::Archive::new(open_stream(bundle)?);
    let mut entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a bundle: {e}")))?;
    let mut first = entries
        .next()
        .ok_or_else(|| invalid("empty: no manifest.json".into()))?
        .map_err(|e| invalid(format!("not a bundle: {e}")))?;
    let path = first
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path != MANIFEST {
        return Err(invalid(format!(
            "not a bundle: its first entry is {path:?}, not {MANIFEST}"
        )));
    }
    let mut text = Vec::new();
    first
        .read_to_end(&mut text)
        .map_err(|e| BundleError::BadEntry {
            bundle: bundle.to_owned(),
            entry: MANIFEST.into(),
            message: e.to_string(),
        })?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BundleError::BadEntry {
        bundle: bundle.to_owned(),
        entry: MANIFEST.into(),
        message: format!("unreadable: {e}"),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "bundle format {} is not supported by this kinit (format {FORMAT_VERSION}); use a matching kinit",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

/// Checks every entry against the manifest; optionally extracts the entries into `into`
/// (each written to a temporary name and renamed only once its checksum matched).
fn walk(bundle: &Path, into: Option<&Path>) -> Result<Manifest, BundleError> {
    let manifest = read_manifest(bundle)?;
    let expected: BTreeMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut seen = Vec::new();
    let bad = |entry: &str, message: String| BundleError::BadEntry {
        bundle: bundle.to_owned(),
        entry: entry.to_owned(),
        message,
    };
    let mut stream = open_stream(bundle)?;
    {
        let mut archive = tar::Archive::new(&mut stream);
        let mut previous = MANIFEST.to_owned();
        let entries = archive
            .entries()
            .map_err(|e| bad(MANIFEST, e.to_string()))?;
        for (index, item) in entries.enumerate() {
            let mut item = item.map_err(|e| {
                bad(
                    &format!("after {previous}"),
                    format!("damaged archive: {e}"),
                )
            })?;
            let path = item
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|e| bad(&format!("after {previous}"), e.to_string()))?;
            if index == 0 {
                continue;
            }
            let Some(entry) = expected.get(path.as_str()) else {
                return Err(bad(&path, "not listed in the manifest".into()));
            };
            let mut hash = Sha256::new();
            let target = into.map(|dir| dir.join(&path));
            let size = match &target {
                Some(target) => {
                    let partial = target.with_extension("partial");
                    if let Some(parent) = partial.parent() {
                        fs::create_dir_all(parent).map_err(io_error(parent))?;
                    }
                    let mut file = File::create(&partial).map_err(io_error(&partial))?;
                    let size = copy_hashing(&mut item, &mut file, &mut hash)
                        .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?;
                    drop(file);
                    size
                }
                None => copy_hashing(&mut item, &mut io::sink(), &mut hash)
                    .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?,
            };
            let digest = hex::encode(hash.finalize());
            if size != entry.size {
                return Err(bad(
                    &path,
                    format!("{size} bytes, the manifest says {}", entry.size),
                ));
            }
            if digest != entry.sha256 {
                return Err(bad(
                    &path,
                    format!("sha256 {digest}, the manifest says {}", entry.sha256),
                ));
            }
            if let Some(target) = target {
                let partial = target.with_extension("partial");
                let mode = if entry.kind == Kind::Image {
                    0o644
                } else {
                    0o755
                };
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&partial, fs::Permissions::from_mode(mode))
                    .map_err(io_error(&partial))?;
                fs::rename(&partial, &target).map_err(io_error(&target))?;
            }
            seen.push(path.clone());
            previous = path;
        }
    }
    // The tar reader stops at the end-of-archive marker; read on so that the compression
    // layer checks its own trailer (zstd's content checksum) too.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| {
        bad(
            &format!(
                "the end of the archive (after {})",
                seen.last().map_or(MANIFEST, String::as_str)
            ),
            e.to_string(),
        )
    })?;
    let missing: Vec<&str> = expected
        .keys()
        .filter(|p| !seen.iter().any(|s| s == *p))
        .copied()
        .collect();
    if let Some(first) = missing.first() {
        return Err(bad(
            first,
            format!(
                "missing from the archive (truncated?); {} entries missing in all",
                missing.len()
            ),
        ));
    }
    Ok(manifest)
}

fn copy_hashing(from: &mut impl Read, to: &mut impl Write, hash: &mut Sha256) -> io::Result<u64> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(total);
        }
        hash.update(&buffer[..n]);
        to.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

/// Verifies every checksum of a bundle.
pub fn verify(bundle: &Path) -> Result<Manifest, BundleError> {
    walk(bundle, None)
}

/// Verifies a bundle and unpacks it into `dir` (`bin/`, `cni/`, `images/`, `manifest.json`).
pub fn extract(bundle: &Path, dir: &Path) -> Result<Manifest, BundleError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let manifest = walk(bundle, Some(dir))?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("serialisable");
    fs::write(dir.join(MANIFEST), manifest_json).map_err(io_error(dir))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(dir: &Path) -> Vec<Artifact> {
        let mut list = Vec::new();
        for (name, kind, content) in [
            ("kubelet", Kind::Binary, vec![7u8; 300_000]),
            ("bridge", Kind::CniPlugin, b"bridge plugin".to_vec()),
            ("pause.tar", Kind::Image, b"image".to_vec()),
        ] {
            let file = dir.join(name);
            fs::write(&file, content).unwrap();
            list.push(Artifact {
                name: name.trim_end_matches(".tar").into(),
                kind,
                version: "v1".into(),
                source: "test".into(),
                file,
            });
        }
        list
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("b.tar.zst");
        let made = create(&bundle, &artifacts(tmp.path()), "v1.20.2", "test").unwrap();
        assert_eq!(read_manifest(&bundle).unwrap(), made);
        assert_eq!(verify(&bundle).unwrap(), made);
        let out = tmp.path().join("out");
        extract(&bundle, &out).unwrap();
        assert_eq!(
            fs::read(out.join("bin/kubelet")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(fs::read(out.join("cni/bridge")).unwrap(), b"bridge plugin");
        assert!(out.join("images/pause.tar").is_file());
    }

    #[test]
    fn truncation_names_an_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("b.tar.zst");
        create(&bundle, &artifacts(tmp.path()), "v1.20.2", "test").unwrap();
        let bytes = fs::read(&bundle).unwrap();
        let cut = tmp.path().join("cut.tar.zst");
        fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
        let err = verify(&cut).unwrap_err().to_string();
        assert!(err.contains("entry "), "{err}");
    }

    #[test]
    fn plain_tar_and_strangers() {
        let tmp = tempfile::tempdir().unwrap();
        let not_bundle = tmp.path().join("x");
        fs::write(&not_bundle, b"hello").unwrap();
        assert!(verify(&not_bundle).is_err());
    }
}
