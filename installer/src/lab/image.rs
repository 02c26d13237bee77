//! The lab's node image: Debian bookworm built by `lab/node-image.sh` with debootstrap and
//! imported into docker. Building takes about a minute, so both the root file-system tarball
//! (in kinit's cache) and the docker image are keyed by the checksum of the scripts that make
//! them: a changed script makes a new image, an unchanged one is never rebuilt.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::LabError;
use super::docker::Docker;

const NODE_IMAGE_SCRIPT: &str = include_str!("../../lab/node-image.sh");
const NODE_INIT_SCRIPT: &str = include_str!("../../lab/node-init.sh");
/// Where node-image.sh installs node-init.sh inside the image.
const ENTRYPOINT: &str = "/usr/local/sbin/kinit-node-init";

fn key() -> String {
    let mut hash = Sha256::new();
    hash.update(NODE_IMAGE_SCRIPT);
    hash.update(NODE_INIT_SCRIPT);
    hex::encode(hash.finalize())[..12].to_owned()
}

/// The docker tag of the node image these scripts build.
pub fn node_image() -> String {
    format!("kinit-lab-node:{}", key())
}

fn mirror() -> String {
    std::env::var("KINIT_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// Makes sure the node image exists in docker, building it when no cached tarball exists.
pub fn ensure_node_image(docker: &Docker, cache: &Path) -> Result<String, LabError> {
    let image = node_image();
    if docker.image_exists(&image) {
        return Ok(image);
    }
    let images = cache.join("images");
    let tarball = images.join(format!("kinit-lab-node-{}.tar", key()));
    if !tarball.is_file() {
        build_tarball(&images, &tarball)?;
    }
    eprintln!("[lab] importing the node image {image}");
    docker.import(&tarball, &image, ENTRYPOINT)?;
    Ok(image)
}

fn build_tarball(images: &Path, tarball: &Path) -> Result<(), LabError> {
    let key = key();
    let work = images.join(format!("build-{key}"));
    let host_error = |what: &str, e: std::io::Error| LabError::Host(format!("{what}: {e}"));
    if work.exists() {
        // A build that died half-way; debootstrap refuses a non-empty target.
        fs::remove_dir_all(&work).map_err(|e| host_error(&work.display().to_string(), e))?;
    }
    fs::create_dir_all(&work).map_err(|e| host_error(&work.display().to_string(), e))?;
    for (name, text) in [
        ("node-image.sh", NODE_IMAGE_SCRIPT),
        ("node-init.sh", NODE_INIT_SCRIPT),
    ] {
        fs::write(work.join(name), text).map_err(|e| host_error(name, e))?;
    }
    let rootfs = work.join("rootfs");
    let log_path = images.join(format!("build-{key}.log"));
    let log =
        fs::File::create(&log_path).map_err(|e| host_error(&log_path.display().to_string(), e))?;
    let log_err = log.try_clone().map_err(|e| host_error("log", e))?;
    eprintln!(
        "[lab] building the node image with debootstrap (about a minute, once; log: {})",
        log_path.display()
    );
    let status = Command::new("bash")
        .arg(work.join("node-image.sh"))
        .arg(&rootfs)
        .arg(mirror())
        .stdout(log)
        .stderr(log_err)
        .status()
        .map_err(|e| host_error("bash", e))?;
    if !status.success() {
        let tail = tail_of(&log_path, 5);
        return Err(LabError::Host(format!(
            "building the node image failed ({status}); last lines of {}:\n{tail}",
            log_path.display()
        )));
    }
    let partial = tarball.with_extension("tar.partial");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&partial)
        .arg(".")
        .status()
        .map_err(|e| host_error("tar", e))?;
    if !status.success() {
        return Err(LabError::Host(format!(
            "packing {} failed",
            rootfs.display()
        )));
    }
    fs::rename(&partial, tarball).map_err(|e| host_error(&tarball.display().to_string(), e))?;
    fs::remove_dir_all(&work).map_err(|e| host_error(&work.display().to_string(), e))?;
    Ok(())
}

fn tail_of(path: &PathBuf, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
