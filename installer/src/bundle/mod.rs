//! Offline bundles: one file that carries every binary and image kinit installs, with a
//! manifest of their names, versions, sizes, checksums and origins.
//!
//! A bundle is a plain tar file. Its first entry is `manifest.json`, its second
//! `manifest.json.sha256`; then comes every artifact, each compressed on its own with zstd
//! (`bin/kubelet.zst`). The manifest records each entry's checksum both as stored and as
//! installed. Verification covers every byte of the file: stored checksums catch any change to
//! an entry (including bits a decompressor would silently ignore), tar header checksums cover
//! the headers, and the padding between entries must be zero. So a corrupted or truncated
//! bundle is rejected with the name of the bad entry, without unpacking it.

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
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_CHECKSUM: &str = "manifest.json.sha256";
const BLOCK: u64 = 512;

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
    /// Path of the installed file, relative to an unpacked bundle (`bin/kubelet`).
    pub path: String,
    /// Path of the compressed entry inside the bundle (`bin/kubelet.zst`).
    pub stored_path: String,
    pub stored_sha256: String,
    pub stored_size: u64,
    pub kind: Kind,
    pub version: String,
    pub architecture: String,
    /// Checksum and size of the installed (uncompressed) file.
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

/// Writes a bundle of `artifacts` to `output`, atomically.
pub fn create(
    output: &Path,
    artifacts: &[Artifact],
    kubernetes_version: &str,
    source: &str,
) -> Result<Manifest, BundleError> {
    let mut paths: Vec<String> = artifacts.iter().map(Artifact::bundle_path).collect();
    paths.sort_unstable();
    if let Some(pair) = paths.windows(2).find(|w| w[0] == w[1]) {
        return Err(BundleError::Source(format!(
            "two artifacts would be stored as {}",
            pair[0]
        )));
    }
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    // Entries are compressed first: the manifest that leads the bundle records their checksums.
    let scratch = tempfile::Builder::new()
        .prefix(".kinit-bundle-")
        .tempdir_in(output.parent().unwrap_or(Path::new(".")))
        .map_err(io_error(output))?;
    let mut entries = Vec::new();
    for (index, artifact) in artifacts.iter().enumerate() {
        let compressed = scratch.path().join(format!("{index}.zst"));
        let (sha256, size) = compress(&artifact.file, &compressed)?;
        let (stored_sha256, stored_size) = sha256_file(&compressed)?;
        let path = artifact.bundle_path();
        entries.push(Entry {
            name: artifact.name.clone(),
            stored_path: format!("{path}.zst"),
            path,
            stored_sha256,
            stored_size,
            kind: artifact.kind,
            version: artifact.version.clone(),
            architecture: "amd64".into(),
            sha256,
            size,
            source: artifact.source.clone(),
        });
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
    let mut builder = tar::Builder::new(File::create(&partial).map_err(io_error(&partial))?);
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("serialisable");
    let manifest_sum = format!(
        "{}  {MANIFEST}\n",
        hex::encode(Sha256::digest(&manifest_json))
    );
    for (name, bytes) in [
        (MANIFEST, manifest_json.as_slice()),
        (MANIFEST_CHECKSUM, manifest_sum.as_bytes()),
    ] {
        let mut header = tar_header(bytes.len() as u64, 0o644);
        builder
            .append_data(&mut header, name, bytes)
            .map_err(io_error(&partial))?;
    }
    for (index, entry) in manifest.entries.iter().enumerate() {
        let compressed = scratch.path().join(format!("{index}.zst"));
        let file = File::open(&compressed).map_err(io_error(&compressed))?;
        let mut header = tar_header(entry.stored_size, 0o644);
        builder
            .append_data(&mut header, &entry.stored_path, file)
            .map_err(io_error(&compressed))?;
    }
    let file = builder.into_inner().map_err(io_error(&partial))?;
    file.sync_all().map_err(io_error(&partial))?;
    fs::rename(&partial, output).map_err(io_error(output))?;
    Ok(manifest)
}

/// Compresses `input` into `output` with zstd; returns the input's checksum and size.
fn compress(input: &Path, output: &Path) -> Result<(String, u64), BundleError> {
    let mut reader = File::open(input).map_err(io_error(input))?;
    let file = File::create(output).map_err(io_error(output))?;
    let mut encoder = zstd::Encoder::new(file, 3).map_err(io_error(output))?;
    encoder.include_checksum(true).map_err(io_error(output))?;
    // Both cores: compression dominates the time of building a bundle.
    encoder
        .multithread(std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .map_err(io_error(output))?;
    let mut hash = Sha256::new();
    let size = copy_hashing(&mut reader, &mut encoder, &mut hash).map_err(io_error(input))?;
    encoder.finish().map_err(io_error(output))?;
    Ok((hex::encode(hash.finalize()), size))
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

fn open(bundle: &Path) -> Result<tar::Archive<BufReader<File>>, BundleError> {
    Ok(tar::Archive::new(BufReader::new(
        File::open(bundle).map_err(io_error(bundle))?,
    )))
}

/// Reads a bundle's manifest (its first two entries) without reading the rest.
pub fn read_manifest(bundle: &Path) -> Result<Manifest, BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: bundle.to_owned(),
        message,
    };
    let bad = |entry: &str, message: String| BundleError::BadEntry {
        bundle: bundle.to_owned(),
        entry: entry.to_owned(),
        message,
    };
    let mut archive = open(bundle)?;
    let mut entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a bundle: {e}")))?;
    let mut read_entry = |expected: &str| -> Result<Vec<u8>, BundleError> {
        let mut entry = entries
            .next()
            .ok_or_else(|| invalid(format!("not a bundle: no {expected}")))?
            .map_err(|e| bad(expected, format!("not readable: {e}")))?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path != expected {
            return Err(invalid(format!(
                "not a bundle: found {path:?} where {expected} belongs"
            )));
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(expected, format!("truncated or damaged: {e}")))?;
        Ok(bytes)
    };
    let text = read_entry(MANIFEST)?;
    let sum = read_entry(MANIFEST_CHECKSUM)?;
    let digest = hex::encode(Sha256::digest(&text));
    if String::from_utf8_lossy(&sum).split_whitespace().next() != Some(digest.as_str()) {
        return Err(bad(
            MANIFEST,
            format!("damaged: its sha256 is {digest}, {MANIFEST_CHECKSUM} says otherwise"),
        ));
    }
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| bad(MANIFEST, format!("unreadable: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "bundle format {} is not supported by this kinit (format {FORMAT_VERSION}); use a matching kinit",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

/// Checks every byte of a bundle: each entry's stored checksum and size, the order and
/// completeness of entries, and the zero padding tar puts between and after them. With
/// `into`, also decompresses each entry there, checking the installed checksum, writing to a
/// temporary name and renaming only once it matched.
fn walk(bundle: &Path, into: Option<&Path>) -> Result<Manifest, BundleError> {
    let manifest = read_manifest(bundle)?;
    let bad = |entry: &str, message: String| BundleError::BadEntry {
        bundle: bundle.to_owned(),
        entry: entry.to_owned(),
        message,
    };
    // Where each entry's data ends in the file, for the padding check.
    let mut data_ends: Vec<(String, u64)> = Vec::new();
    let mut expected = [MANIFEST, MANIFEST_CHECKSUM]
        .into_iter()
        .map(str::to_owned)
        .chain(manifest.entries.iter().map(|e| e.stored_path.clone()));
    let mut archive = open(bundle)?;
    let mut previous = String::from("the start of the bundle");
    let items = archive
        .entries()
        .map_err(|e| bad(MANIFEST, e.to_string()))?;
    for item in items {
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
        let Some(wanted) = expected.next() else {
            return Err(bad(&path, "not listed in the manifest".into()));
        };
        if path != wanted {
            return Err(bad(
                &wanted,
                format!("expected here, found {path:?} (damaged or reordered)"),
            ));
        }
        let entry = manifest.entries.iter().find(|e| e.stored_path == path);
        let position = item.raw_file_position();
        let mut stored = Sha256::new();
        match (entry, into) {
            (Some(entry), Some(dir)) => {
                let target = dir.join(&entry.path);
                let partial = target.with_extension("partial");
                if let Some(parent) = partial.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                let mut file = File::create(&partial).map_err(io_error(&partial))?;
                let mut content = Sha256::new();
                let tee = HashReader {
                    inner: &mut item,
                    hash: &mut stored,
                    read: 0,
                };
                let mut decoder = zstd::Decoder::new(tee).map_err(|e| bad(&path, e.to_string()))?;
                let size = copy_hashing(&mut decoder, &mut file, &mut content)
                    .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?;
                // Read the stored bytes to their end, whatever the decoder needed; bytes the
                // decoder buffered were hashed when the buffer was filled.
                let mut tee = decoder.finish().into_inner();
                io::copy(&mut tee, &mut io::sink())
                    .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?;
                let stored_size = tee.read;
                check_stored(bundle, entry, stored, stored_size)?;
                let digest = hex::encode(content.finalize());
                if size != entry.size || digest != entry.sha256 {
                    return Err(bad(
                        &path,
                        format!(
                            "unpacks to {size} bytes with sha256 {digest}, the manifest says {} and {}",
                            entry.size, entry.sha256
                        ),
                    ));
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = if entry.kind == Kind::Image {
                    0o644
                } else {
                    0o755
                };
                fs::set_permissions(&partial, fs::Permissions::from_mode(mode))
                    .map_err(io_error(&partial))?;
                fs::rename(&partial, &target).map_err(io_error(&target))?;
            }
            (Some(entry), None) => {
                let size = copy_hashing(&mut item, &mut io::sink(), &mut stored)
                    .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?;
                check_stored(bundle, entry, stored, size)?;
            }
            (None, _) => {
                // The manifest and its checksum were checked by read_manifest.
                io::copy(&mut item, &mut io::sink())
                    .map_err(|e| bad(&path, format!("truncated or damaged: {e}")))?;
            }
        }
        data_ends.push((path.clone(), position + item.header().size().unwrap_or(0)));
        previous = path;
    }
    if let Some(missing) = expected.next() {
        return Err(bad(
            &missing,
            "missing: the bundle ends before it (truncated?)".into(),
        ));
    }
    check_padding(bundle, &data_ends)?;
    Ok(manifest)
}

fn check_stored(bundle: &Path, entry: &Entry, hash: Sha256, size: u64) -> Result<(), BundleError> {
    let digest = hex::encode(hash.finalize());
    if size != entry.stored_size || digest != entry.stored_sha256 {
        return Err(BundleError::BadEntry {
            bundle: bundle.to_owned(),
            entry: entry.stored_path.clone(),
            message: format!(
                "damaged: {size} bytes with sha256 {digest}, the manifest says {} bytes with {}",
                entry.stored_size, entry.stored_sha256
            ),
        });
    }
    Ok(())
}

/// tar pads each entry's data to a 512-byte block and ends with zero blocks: every byte there
/// must be zero, or the file was altered where no checksum would notice.
fn check_padding(bundle: &Path, data_ends: &[(String, u64)]) -> Result<(), BundleError> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(bundle).map_err(io_error(bundle))?;
    let length = file.metadata().map_err(io_error(bundle))?.len();
    for (index, (entry, end)) in data_ends.iter().enumerate() {
        let padded = end.div_ceil(BLOCK) * BLOCK;
        // After the last entry, everything up to the end of the file is padding.
        let until = if index + 1 == data_ends.len() {
            length
        } else {
            padded
        };
        let mut zeros = vec![0u8; (until - end) as usize];
        file.seek(SeekFrom::Start(*end)).map_err(io_error(bundle))?;
        file.read_exact(&mut zeros).map_err(io_error(bundle))?;
        if zeros.iter().any(|b| *b != 0) {
            return Err(BundleError::BadEntry {
                bundle: bundle.to_owned(),
                entry: entry.clone(),
                message: "damaged: the padding after its data is not zero".into(),
            });
        }
    }
    if length % BLOCK != 0 {
        return Err(BundleError::Invalid {
            bundle: bundle.to_owned(),
            message: format!("{length} bytes is not a whole number of tar blocks (truncated?)"),
        });
    }
    Ok(())
}

/// Hashes what passes through it, for checking an entry's stored bytes while decompressing.
struct HashReader<'a, R> {
    inner: R,
    hash: &'a mut Sha256,
    read: u64,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
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
        let bundle = tmp.path().join("b.tar");
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
    fn every_byte_is_covered() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("b.tar");
        create(&bundle, &artifacts(tmp.path()), "v1.20.2", "test").unwrap();
        let bytes = fs::read(&bundle).unwrap();
        let damaged = tmp.path().join("damaged.tar");
        // Every 97th byte, so headers, data, padding and the end blocks are all hit.
        for at in (0..bytes.len()).step_by(97) {
            let mut copy = bytes.clone();
            copy[at] ^= 0x01;
            fs::write(&damaged, &copy).unwrap();
            assert!(
                verify(&damaged).is_err(),
                "a flipped bit at {at} of {} went unnoticed",
                bytes.len()
            );
        }
    }

    #[test]
    fn truncation_names_an_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("b.tar");
        create(&bundle, &artifacts(tmp.path()), "v1.20.2", "test").unwrap();
        let bytes = fs::read(&bundle).unwrap();
        let cut = tmp.path().join("cut.tar");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
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
