//! `kinit bundle`: offline bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use kinit::bundle::{self, lab, upstream};
use kinit::config::KubernetesVersion;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Debian bookworm: packages, Kubernetes built from Debian's source, local images.
    Lab,
    /// Release downloads from dl.k8s.io and GitHub, checked against published checksums.
    Upstream,
    /// A local directory with bin/, cni/ and images/ (see --from-dir).
    Directory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Build a bundle holding every binary and image kinit installs.
    ///
    /// The lab source needs only Debian's archive (it builds Kubernetes v1.20.2 from Debian's
    /// source package, about 6 minutes on 2 cores, once); the upstream source needs internet
    /// access or a mirror. Products are cached, so building again is quick.
    Create {
        #[arg(long, value_enum, default_value_t = Source::Lab)]
        source: Source,
        /// Kubernetes version. The lab source can only build v1.20.2's source, but stamps
        /// another patch version into it on request (to test upgrades).
        #[arg(long, default_value = "v1.20.2")]
        kubernetes_version: KubernetesVersion,
        /// Upstream source: a mirror with dl.k8s.io's and GitHub's layout (http, https or file URL).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// Directory source: the directory to bundle.
        #[arg(long, value_name = "DIR", required_if_eq("source", "directory"))]
        from_dir: Option<PathBuf>,
        /// Where to write the bundle [default: kinit's cache; the path is printed].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show what a bundle holds.
    Inspect {
        file: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Check every entry of a bundle against its manifest's checksums.
    Verify { file: PathBuf },
    /// Verify a bundle and unpack it into DIR.
    Extract { file: PathBuf, dir: PathBuf },
}

pub fn run(command: BundleCommand) -> anyhow::Result<ExitCode> {
    match command {
        BundleCommand::Create {
            source,
            kubernetes_version,
            mirror,
            from_dir,
            output,
        } => {
            let cache = kinit::state::cache_dir();
            let built = match source {
                Source::Lab => {
                    anyhow::ensure!(
                        (kubernetes_version.major, kubernetes_version.minor) == (1, 20),
                        "the lab source builds Debian's Kubernetes v1.20.2 source; it can stamp another v1.20 patch version, not {kubernetes_version}"
                    );
                    lab::bundle(&cache, kubernetes_version)?
                }
                Source::Upstream => {
                    let versions = upstream::Versions::for_kubernetes(kubernetes_version);
                    let stage = tempfile::tempdir_in(&cache).or_else(|_| tempfile::tempdir())?;
                    let mut artifacts =
                        upstream::artifacts(&versions, mirror.as_deref(), stage.path())?;
                    let pause = lab::build_pause(&cache.join("images"))?;
                    let pause_archive = stage.path().join("pause.tar");
                    lab::pause_image(&pause, &pause_archive)?;
                    artifacts.push(bundle::Artifact {
                        name: lab::PAUSE_IMAGE.into(),
                        kind: bundle::Kind::Image,
                        version: "3.2".into(),
                        source:
                            "kubernetes build/pause/linux/pause.c compiled with gcc -Os -static"
                                .into(),
                        file: pause_archive,
                    });
                    let path = output.clone().unwrap_or_else(|| {
                        cache
                            .join("bundles")
                            .join(format!("kinit-{kubernetes_version}-upstream.tar"))
                    });
                    bundle::create(
                        &path,
                        &artifacts,
                        &kubernetes_version.to_string(),
                        "upstream",
                    )?;
                    path
                }
                Source::Directory => {
                    let dir = from_dir.expect("clap requires --from-dir");
                    let artifacts =
                        bundle::directory_artifacts(&dir, &kubernetes_version.to_string())?;
                    let path = output.clone().unwrap_or_else(|| {
                        cache
                            .join("bundles")
                            .join(format!("kinit-{kubernetes_version}-directory.tar"))
                    });
                    bundle::create(
                        &path,
                        &artifacts,
                        &kubernetes_version.to_string(),
                        "directory",
                    )?;
                    path
                }
            };
            let path = match output {
                Some(output) if output != built => {
                    std::fs::copy(&built, &output)?;
                    output
                }
                _ => built,
            };
            let manifest = bundle::read_manifest(&path)?;
            let size = std::fs::metadata(&path)?.len();
            println!(
                "{}: {} entries, Kubernetes {}, {:.1} MB",
                path.display(),
                manifest.entries.len(),
                manifest.kubernetes_version,
                size as f64 / 1e6
            );
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Inspect { file, output } => {
            let manifest = bundle::read_manifest(&file)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&manifest)?),
                Output::Table => {
                    println!(
                        "bundle {}: Kubernetes {}, {}, source {}, created {}",
                        file.display(),
                        manifest.kubernetes_version,
                        manifest.architecture,
                        manifest.source,
                        manifest.created
                    );
                    println!(
                        "{:<34} {:<11} {:<26} {:>10}  {:<12}  SOURCE",
                        "NAME", "KIND", "VERSION", "SIZE", "SHA256"
                    );
                    for e in &manifest.entries {
                        println!(
                            "{:<34} {:<11} {:<26} {:>10}  {:<12}  {}",
                            e.name,
                            e.kind.to_string(),
                            e.version,
                            e.size,
                            &e.sha256[..12],
                            e.source
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Verify { file } => {
            let manifest = bundle::verify(&file)?;
            let total: u64 = manifest.entries.iter().map(|e| e.size).sum();
            println!(
                "{}: {} entries verified ({:.1} MB), Kubernetes {}",
                file.display(),
                manifest.entries.len(),
                total as f64 / 1e6,
                manifest.kubernetes_version
            );
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Extract { file, dir } => {
            let manifest = bundle::extract(&file, &dir)?;
            println!(
                "{}: {} entries verified and unpacked into {}",
                file.display(),
                manifest.entries.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
