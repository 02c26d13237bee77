//! Reading the expiry of every certificate in a directory, for `certs check-expiration`:
//! kubeadm's names, the authority that signed each, and whether that authority is managed
//! outside kinit (its key absent).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::Error;
use crate::certificate::CertificateInfo;
use crate::directory::PkiDirectory;
use crate::files::read_optional;
use crate::layout::Signer;

#[derive(Debug, Clone)]
pub struct AuthorityExpiry {
    pub name: &'static str,
    pub file: PathBuf,
    pub not_after: OffsetDateTime,
    pub externally_managed: bool,
    info: CertificateInfo,
}

#[derive(Debug, Clone)]
pub struct CertificateExpiry {
    /// kubeadm's name: `apiserver`, `etcd-server`, `admin.conf`, …
    pub name: String,
    pub node: Option<String>,
    pub file: PathBuf,
    pub not_after: OffsetDateTime,
    /// kubeadm's name of the signing authority, when one of the directory's CAs signed it.
    pub authority: Option<&'static str>,
    pub externally_managed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Expiry {
    pub authorities: Vec<AuthorityExpiry>,
    pub certificates: Vec<CertificateExpiry>,
}

impl Expiry {
    /// Reads every authority and leaf certificate under `pki/`.
    pub fn scan(dir: &PkiDirectory) -> Result<Expiry, Error> {
        let pki = dir.pki();
        let mut expiry = Expiry::default();
        for signer in Signer::ALL {
            let crt = pki.join(signer.stem()).with_extension("crt");
            let Some(pem) = read_optional(&crt)? else {
                continue;
            };
            let info = CertificateInfo::from_pem(&pem)
                .map_err(|e| Error::InvalidFile(crt.display().to_string(), e.to_string()))?;
            let has_key = crt.with_extension("key").exists();
            expiry.authorities.push(AuthorityExpiry {
                name: signer.name(),
                file: relative(dir, &crt),
                not_after: info.not_after,
                externally_managed: !has_key,
                info,
            });
        }
        for leaf in dir.leaf_files()? {
            let crt = pki.join(&leaf.stem).with_extension("crt");
            let pem = read_optional(&crt)?.unwrap_or_default();
            let info = CertificateInfo::from_pem(&pem)
                .map_err(|e| Error::InvalidFile(crt.display().to_string(), e.to_string()))?;
            expiry.add(leaf.name, leaf.node, relative(dir, &crt), &info);
        }
        Ok(expiry)
    }

    /// Records a certificate found elsewhere (a kubeconfig's client certificate).
    pub fn add(
        &mut self,
        name: String,
        node: Option<String>,
        file: PathBuf,
        info: &CertificateInfo,
    ) {
        let signer = self.authorities.iter().find(|a| info.is_signed_by(&a.info));
        self.certificates.push(CertificateExpiry {
            name,
            node,
            file,
            not_after: info.not_after,
            authority: signer.map(|a| a.name),
            externally_managed: signer.is_some_and(|a| a.externally_managed),
        });
    }
}

fn relative(dir: &PkiDirectory, path: &Path) -> PathBuf {
    path.strip_prefix(dir.root()).unwrap_or(path).to_owned()
}
