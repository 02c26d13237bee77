//! Container images written without a registry or a container engine: a docker archive (the
//! format of `docker save`, which `ctr images import` reads) holding one layer, its config and
//! a manifest. Everything is deterministic (fixed times and owners), so the same files always
//! give the same image ID.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::BundleError;

/// A file of the image's single layer.
#[derive(Debug, Clone)]
pub enum ImageFile {
    Regular {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Directory {
        path: String,
    },
}

/// An image: a reference such as `k8s.gcr.io/pause:3.2`, its files and how it starts.
#[derive(Debug, Clone)]
pub struct DockerArchive {
    pub reference: String,
    pub files: Vec<ImageFile>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(kind);
    header
}

impl DockerArchive {
    fn layer(&self) -> std::io::Result<Vec<u8>> {
        let mut layer = tar::Builder::new(Vec::new());
        for file in &self.files {
            match file {
                ImageFile::Directory { path } => {
                    let mut h = header(0, 0o755, tar::EntryType::Directory);
                    layer.append_data(&mut h, path, std::io::empty())?;
                }
                ImageFile::Regular {
                    path,
                    contents,
                    mode,
                } => {
                    let mut h = header(contents.len() as u64, *mode, tar::EntryType::Regular);
                    layer.append_data(&mut h, path, contents.as_slice())?;
                }
                ImageFile::Symlink { path, target } => {
                    let mut h = header(0, 0o777, tar::EntryType::Symlink);
                    layer.append_link(&mut h, path, target)?;
                }
            }
        }
        layer.into_inner()
    }

    /// Writes the archive; returns the image ID (`sha256:` of its config).
    pub fn write(&self, output: &Path) -> Result<String, BundleError> {
        let io = |e: std::io::Error| BundleError::Io {
            path: output.to_owned(),
            source: e,
        };
        let layer = self.layer().map_err(io)?;
        let diff_id = hex::encode(Sha256::digest(&layer));
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "kinit" }],
        });
        let config = serde_json::to_vec(&config).expect("serialisable");
        let config_id = hex::encode(Sha256::digest(&config));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_id}.json"),
            "RepoTags": [self.reference],
            "Layers": [format!("{diff_id}/layer.tar")],
        }]))
        .expect("serialisable");

        let mut archive = tar::Builder::new(File::create(output).map_err(io)?);
        for (path, contents) in [
            (format!("{diff_id}/layer.tar"), layer.as_slice()),
            (format!("{config_id}.json"), config.as_slice()),
            ("manifest.json".to_owned(), manifest.as_slice()),
        ] {
            let mut h = header(contents.len() as u64, 0o644, tar::EntryType::Regular);
            archive.append_data(&mut h, path, contents).map_err(io)?;
        }
        archive.into_inner().map_err(io)?.flush().map_err(io)?;
        Ok(format!("sha256:{config_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> DockerArchive {
        DockerArchive {
            reference: "kinit.io/test:1".into(),
            files: vec![
                ImageFile::Directory { path: "bin".into() },
                ImageFile::Regular {
                    path: "bin/hello".into(),
                    contents: b"#!/bin/sh\necho hi\n".to_vec(),
                    mode: 0o755,
                },
                ImageFile::Symlink {
                    path: "bin/hi".into(),
                    target: "hello".into(),
                },
            ],
            entrypoint: vec!["/bin/hello".into()],
            cmd: vec![],
        }
    }

    #[test]
    fn archives_are_deterministic_and_well_formed() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
        let id = image().write(&a).unwrap();
        assert_eq!(image().write(&b).unwrap(), id);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let mut archive = tar::Archive::new(File::open(&a).unwrap());
        let mut names = Vec::new();
        let mut manifest = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "manifest.json" {
                std::io::Read::read_to_string(&mut entry, &mut manifest).unwrap();
            }
            names.push(name);
        }
        assert_eq!(names.len(), 3);
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "kinit.io/test:1");
        assert_eq!(
            format!(
                "sha256:{}",
                manifest[0]["Config"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches(".json")
            ),
            id
        );
    }
}
