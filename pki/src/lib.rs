//! The cluster PKI in kubeadm's layout: certificate authorities, leaf certificates, private
//! keys, the service-account key pair, the CA pin used by join discovery and bootstrap tokens.
//!
//! This crate knows certificates and files and nothing else: no SSH, no Kubernetes API, no
//! configuration format. Callers describe the cluster with [`ClusterPki`], get a [`Layout`]
//! of what must exist, and bring a [`PkiDirectory`] in line with it.

mod authority;
mod certificate;
mod directory;
mod expiration;
mod files;
mod key;
mod layout;
pub mod pin;
mod token;

use std::path::PathBuf;

pub use authority::{Authority, Staleness};
pub use certificate::{CertificateInfo, CertificateSpec, Sans, Usage};
pub use directory::{
    Action, Authorities, Credential, LeafFile, Outcome, PkiDirectory, Settings, ensure_credential,
};
pub use expiration::{AuthorityExpiry, CertificateExpiry, Expiry};
pub use files::{CERT_MODE, KEY_MODE, read_optional, write_atomic};
pub use key::{KeyAlgorithm, PrivateKey};
pub use layout::{
    AdminGroup, ClusterPki, KubeconfigCredential, Layout, Leaf, Member, Placement, Signer,
};
pub use token::{BootstrapToken, MalformedToken};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Crypto(String),
    #[error("{0}: {1}")]
    InvalidFile(String, String),
    #[error("{0}: no such file")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot sign {subject}: {ca}.key is absent, so {ca} is managed outside kinit; \
         provide {ca}.key, or place a certificate signed by it"
    )]
    ExternalCa { ca: String, subject: String },
    #[error(
        "{ca}.key exists without {ca}.crt; kinit never overwrites a CA key: \
         restore {ca}.crt, or remove {ca}.key to start a new CA"
    )]
    CaKeyWithoutCertificate { ca: String },
    #[error(
        "{ca}.crt expired on {not_after}; kinit never replaces a CA by itself: \
         place a renewed {ca}.crt for the same key, or move the old PKI aside to start over"
    )]
    CaExpired {
        ca: String,
        not_after: time::OffsetDateTime,
    },
    #[error("{file}: {source}")]
    ForFile {
        file: PathBuf,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Attaches the file an error was met while producing.
    pub(crate) fn for_file(self, file: &std::path::Path) -> Error {
        Error::ForFile {
            file: file.to_owned(),
            source: Box::new(self),
        }
    }
}
