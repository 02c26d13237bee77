//! Bringing a `/etc/kubernetes`-shaped directory in line with a [`Layout`]: valid files are kept
//! byte for byte, missing ones are created, a leaf that no longer states what the layout asks
//! is reissued with its existing key, and a CA key is never overwritten.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::authority::Authority;
use crate::certificate::{CertificateInfo, CertificateSpec};
use crate::files::{CERT_MODE, KEY_MODE, read_optional, write_atomic};
use crate::key::{KeyAlgorithm, PrivateKey};
use crate::layout::{Leaf, Signer};

/// How new keys and certificates are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub key_algorithm: KeyAlgorithm,
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            ca_validity: Duration::days(3650),
            leaf_validity: Duration::days(365),
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Kept,
    Created,
    /// Signed again; the text says why.
    Reissued(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Kept => f.write_str("kept"),
            Action::Created => f.write_str("created"),
            Action::Reissued(why) => write!(f, "reissued: {why}"),
        }
    }
}

/// One file's outcome; `file` is relative to the directory's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub file: PathBuf,
    pub action: Action,
}

/// The three authorities of a cluster.
#[derive(Debug)]
pub struct Authorities {
    by_signer: HashMap<Signer, Authority>,
}

impl Authorities {
    pub fn get(&self, signer: Signer) -> &Authority {
        &self.by_signer[&signer]
    }

    /// The authority whose key signed `certificate`.
    pub fn signer_of(&self, certificate: &CertificateInfo) -> Option<&Authority> {
        Signer::ALL
            .iter()
            .map(|s| &self.by_signer[s])
            .find(|a| certificate.is_signed_by(&a.certificate))
    }
}

/// A leaf certificate found under `pki/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFile {
    /// kubeadm's name: `apiserver`, `etcd-server`, …
    pub name: String,
    /// The node of a per-node certificate (`pki/nodes/<node>/…`).
    pub node: Option<String>,
    /// Path under `pki/` without extension.
    pub stem: PathBuf,
}

/// A certificate and key, as found or as newly issued.
#[derive(Debug)]
pub struct Credential {
    pub certificate_pem: String,
    pub key_pem: String,
    pub action: Action,
    /// True when `key_pem` is a new key that must be written.
    pub new_key: bool,
}

/// Keeps an existing credential that still satisfies `spec`, or issues one (reusing the
/// existing key when it is readable). `renew` reissues even a current credential.
pub fn ensure_credential(
    authority: &Authority,
    certificate_pem: Option<&str>,
    key_pem: Option<&str>,
    spec: &CertificateSpec,
    settings: &Settings,
    now: OffsetDateTime,
    renew: bool,
) -> Result<Credential, Error> {
    let verdict = match (certificate_pem, key_pem) {
        (Some(cert), Some(key)) => Some(authority.check(cert, key, spec, now)),
        _ => None,
    };
    if let (Some(Ok(_)), false) = (&verdict, renew) {
        return Ok(Credential {
            certificate_pem: certificate_pem.unwrap_or_default().to_owned(),
            key_pem: key_pem.unwrap_or_default().to_owned(),
            action: Action::Kept,
            new_key: false,
        });
    }
    let action = match (&verdict, certificate_pem) {
        (_, None) => Action::Created,
        (Some(Ok(_)), Some(_)) => Action::Reissued("renewal requested".into()),
        (Some(Err(stale)), Some(_)) => Action::Reissued(stale.to_string()),
        (None, Some(_)) => Action::Reissued("its key is missing".into()),
    };
    let existing_key = key_pem.and_then(|pem| PrivateKey::from_pem(pem).ok());
    let new_key = existing_key.is_none();
    let key = match existing_key {
        Some(key) => key,
        None => PrivateKey::generate(settings.key_algorithm)?,
    };
    let issued = authority.issue(spec, &key, settings.leaf_validity, now)?;
    Ok(Credential {
        certificate_pem: issued,
        key_pem: key.pem().to_owned(),
        action,
        new_key,
    })
}

/// A directory shaped like `/etc/kubernetes`: kubeconfigs at the top, certificates under `pki/`.
#[derive(Debug, Clone)]
pub struct PkiDirectory {
    root: PathBuf,
}

impl PkiDirectory {
    pub fn new(root: impl Into<PathBuf>) -> PkiDirectory {
        PkiDirectory { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_owned()
    }

    fn pair_paths(&self, stem: &Path) -> (PathBuf, PathBuf) {
        let base = self.pki().join(stem);
        (base.with_extension("crt"), base.with_extension("key"))
    }

    /// Loads each authority, creating those that do not exist yet. An authority whose key is
    /// absent is external: it can vouch for leaves but not sign new ones.
    pub fn ensure_authorities(
        &self,
        settings: &Settings,
        now: OffsetDateTime,
    ) -> Result<(Authorities, Vec<Outcome>), Error> {
        let mut by_signer = HashMap::new();
        let mut outcomes = Vec::new();
        for signer in Signer::ALL {
            let (crt, key) = self.pair_paths(Path::new(signer.stem()));
            let authority = match (read_optional(&crt)?, read_optional(&key)?) {
                (Some(cert_pem), key_pem) => {
                    let authority =
                        Authority::from_pem(signer.stem(), &cert_pem, key_pem.as_deref())?;
                    if authority.certificate.not_after <= now {
                        return Err(Error::CaExpired {
                            ca: signer.stem().into(),
                            not_after: authority.certificate.not_after,
                        });
                    }
                    outcomes.push(Outcome {
                        file: self.relative(&crt),
                        action: Action::Kept,
                    });
                    authority
                }
                (None, Some(_)) => {
                    return Err(Error::CaKeyWithoutCertificate {
                        ca: signer.stem().into(),
                    });
                }
                (None, None) => {
                    let key_material = PrivateKey::generate(settings.key_algorithm)?;
                    let authority = Authority::create(
                        signer.stem(),
                        signer.common_name(),
                        key_material,
                        settings.ca_validity,
                        now,
                    )?;
                    let key_pem = authority
                        .key()
                        .map(|k| k.pem().to_owned())
                        .unwrap_or_default();
                    write_atomic(&key, key_pem.as_bytes(), KEY_MODE)?;
                    write_atomic(&crt, authority.certificate_pem().as_bytes(), CERT_MODE)?;
                    outcomes.push(Outcome {
                        file: self.relative(&crt),
                        action: Action::Created,
                    });
                    authority
                }
            };
            by_signer.insert(signer, authority);
        }
        Ok((Authorities { by_signer }, outcomes))
    }

    /// Loads the authorities that exist, without creating any.
    pub fn load_authorities(&self) -> Result<Authorities, Error> {
        let mut by_signer = HashMap::new();
        for signer in Signer::ALL {
            let (crt, key) = self.pair_paths(Path::new(signer.stem()));
            let cert_pem = read_optional(&crt)?.ok_or_else(|| Error::Missing(crt.clone()))?;
            let key_pem = read_optional(&key)?;
            by_signer.insert(
                signer,
                Authority::from_pem(signer.stem(), &cert_pem, key_pem.as_deref())?,
            );
        }
        Ok(Authorities { by_signer })
    }

    /// Brings every leaf in line; with `renew`, reissues them all (keeping their keys).
    pub fn ensure_leaves(
        &self,
        authorities: &Authorities,
        leaves: &[Leaf],
        settings: &Settings,
        now: OffsetDateTime,
        renew: bool,
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = Vec::new();
        for leaf in leaves {
            let (crt, key) = self.pair_paths(&leaf.stem);
            let cert_pem = read_optional(&crt)?;
            let key_pem = read_optional(&key)?;
            let credential = ensure_credential(
                authorities.get(leaf.signer),
                cert_pem.as_deref(),
                key_pem.as_deref(),
                &leaf.spec,
                settings,
                now,
                renew,
            )
            .map_err(|e| e.for_file(&self.relative(&crt)))?;
            if credential.new_key {
                write_atomic(&key, credential.key_pem.as_bytes(), KEY_MODE)?;
            }
            if credential.action != Action::Kept {
                write_atomic(&crt, credential.certificate_pem.as_bytes(), CERT_MODE)?;
            }
            outcomes.push(Outcome {
                file: self.relative(&crt),
                action: credential.action,
            });
        }
        Ok(outcomes)
    }

    /// The leaf certificates present under `pki/`, authorities excluded, sorted by path.
    pub fn leaf_files(&self) -> Result<Vec<LeafFile>, Error> {
        let pki = self.pki();
        let mut files = Vec::new();
        collect_certificates(&pki, &mut files)?;
        files.sort();
        let mut leaves = Vec::new();
        for crt in files {
            let stem = crt.strip_prefix(&pki).unwrap_or(&crt).with_extension("");
            let text = stem.to_string_lossy().into_owned();
            if Signer::ALL.iter().any(|s| s.stem() == text) {
                continue;
            }
            let (node, kubeadm_stem) = match text
                .strip_prefix("nodes/")
                .and_then(|rest| rest.split_once('/'))
            {
                Some((node, rest)) => (Some(node.to_owned()), rest.to_owned()),
                None => (None, text),
            };
            leaves.push(LeafFile {
                name: kubeadm_stem.replace('/', "-"),
                node,
                stem,
            });
        }
        Ok(leaves)
    }

    /// Reissues existing leaves whose kubeadm name `select` accepts, keeping their keys and
    /// restating exactly what they state now (kubeadm's `certs renew`). Authorities are kept.
    pub fn renew_leaves(
        &self,
        authorities: &Authorities,
        select: impl Fn(&LeafFile) -> bool,
        settings: &Settings,
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = Vec::new();
        for leaf in self.leaf_files()?.into_iter().filter(|l| select(l)) {
            let (crt, key) = self.pair_paths(&leaf.stem);
            let file = self.relative(&crt);
            let cert_pem = read_optional(&crt)?.unwrap_or_default();
            let key_pem = read_optional(&key)?.ok_or_else(|| Error::Missing(key.clone()))?;
            let info = CertificateInfo::from_pem(&cert_pem)
                .map_err(|e| Error::InvalidFile(file.display().to_string(), e.to_string()))?;
            let authority = authorities.signer_of(&info).ok_or_else(|| {
                Error::InvalidFile(
                    file.display().to_string(),
                    "not signed by any of the directory's authorities; regenerate it with `certs generate`".into(),
                )
            })?;
            let credential = ensure_credential(
                authority,
                Some(&cert_pem),
                Some(&key_pem),
                &info.as_spec(),
                settings,
                now,
                true,
            )
            .map_err(|e| e.for_file(&file))?;
            write_atomic(&crt, credential.certificate_pem.as_bytes(), CERT_MODE)?;
            outcomes.push(Outcome {
                file,
                action: credential.action,
            });
        }
        Ok(outcomes)
    }

    /// The service-account signing key pair (`sa.key`, `sa.pub`); no certificate.
    pub fn ensure_service_account_key(&self, settings: &Settings) -> Result<Vec<Outcome>, Error> {
        let key_path = self.pki().join("sa.key");
        let pub_path = self.pki().join("sa.pub");
        let existing_pub = read_optional(&pub_path)?;
        let (key, key_action) = match read_optional(&key_path)? {
            Some(pem) => (
                PrivateKey::from_pem(&pem).map_err(|e| {
                    Error::InvalidFile(
                        self.relative(&key_path).display().to_string(),
                        e.to_string(),
                    )
                })?,
                Action::Kept,
            ),
            None if existing_pub.is_some() => {
                return Err(Error::InvalidFile(
                    self.relative(&key_path).display().to_string(),
                    "sa.pub exists without sa.key; restore sa.key (service-account tokens already issued depend on it) or remove sa.pub".into(),
                ));
            }
            None => {
                let key = PrivateKey::generate(settings.key_algorithm)?;
                write_atomic(&key_path, key.pem().as_bytes(), KEY_MODE)?;
                (key, Action::Created)
            }
        };
        let public = key.public_key_pem();
        let pub_action = match existing_pub {
            Some(text) if text == public => Action::Kept,
            Some(_) => Action::Reissued("it does not match sa.key".into()),
            None => Action::Created,
        };
        if pub_action != Action::Kept {
            write_atomic(&pub_path, public.as_bytes(), CERT_MODE)?;
        }
        Ok(vec![
            Outcome {
                file: self.relative(&key_path),
                action: key_action,
            },
            Outcome {
                file: self.relative(&pub_path),
                action: pub_action,
            },
        ])
    }
}

fn collect_certificates(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.is_dir() {
            collect_certificates(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            into.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{AdminGroup, ClusterPki, Member, Placement};
    use std::fs;

    fn cluster(address: &str) -> ClusterPki {
        let member = Member {
            name: "cp1".into(),
            address: address.parse().unwrap(),
        };
        ClusterPki {
            dns_domain: "cluster.local".into(),
            kubernetes_service_ip: "10.96.0.1".parse().unwrap(),
            control_plane_endpoint: None,
            extra_sans: vec![],
            control_planes: vec![member.clone()],
            etcd_members: vec![member],
            kubelets: vec!["cp1".into()],
            admin_group: AdminGroup::ClusterAdmins,
        }
    }

    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push((path.clone(), fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    fn generate(dir: &PkiDirectory, pki: &ClusterPki) -> Vec<Outcome> {
        let settings = Settings::default();
        let now = OffsetDateTime::now_utc();
        let (authorities, mut outcomes) = dir.ensure_authorities(&settings, now).unwrap();
        let layout = pki.layout(&Placement::Cluster);
        outcomes.extend(
            dir.ensure_leaves(&authorities, &layout.leaves, &settings, now, false)
                .unwrap(),
        );
        outcomes.extend(dir.ensure_service_account_key(&settings).unwrap());
        outcomes
    }

    #[test]
    fn second_run_keeps_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PkiDirectory::new(tmp.path());
        generate(&dir, &cluster("10.0.0.1"));
        let before = snapshot(tmp.path());
        let outcomes = generate(&dir, &cluster("10.0.0.1"));
        assert!(
            outcomes.iter().all(|o| o.action == Action::Kept),
            "{outcomes:?}"
        );
        assert_eq!(snapshot(tmp.path()), before);
    }

    #[test]
    fn address_change_reissues_only_certificates_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PkiDirectory::new(tmp.path());
        generate(&dir, &cluster("10.0.0.1"));
        let outcomes = generate(&dir, &cluster("10.0.0.9"));
        let reissued: Vec<String> = outcomes
            .iter()
            .filter(|o| matches!(o.action, Action::Reissued(_)))
            .map(|o| o.file.display().to_string())
            .collect();
        assert_eq!(
            reissued,
            [
                "pki/nodes/cp1/apiserver.crt",
                "pki/nodes/cp1/etcd/server.crt",
                "pki/nodes/cp1/etcd/peer.crt"
            ]
        );
    }

    #[test]
    fn a_lone_ca_key_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PkiDirectory::new(tmp.path());
        fs::create_dir_all(dir.pki()).unwrap();
        fs::write(dir.pki().join("ca.key"), "precious").unwrap();
        let err = dir
            .ensure_authorities(&Settings::default(), OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.pki().join("ca.key")).unwrap(),
            "precious"
        );
    }

    #[test]
    fn external_ca_without_key_refuses_to_sign_missing_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PkiDirectory::new(tmp.path());
        generate(&dir, &cluster("10.0.0.1"));
        fs::remove_file(dir.pki().join("ca.key")).unwrap();
        fs::remove_file(dir.pki().join("front-proxy-client.crt")).unwrap();
        // front-proxy-client is signed by front-proxy-ca, whose key is still there.
        generate(&dir, &cluster("10.0.0.1"));
        fs::remove_file(dir.pki().join("apiserver-kubelet-client.crt")).unwrap();
        let settings = Settings::default();
        let now = OffsetDateTime::now_utc();
        let (authorities, _) = dir.ensure_authorities(&settings, now).unwrap();
        let layout = cluster("10.0.0.1").layout(&Placement::Cluster);
        let err = dir
            .ensure_leaves(&authorities, &layout.leaves, &settings, now, false)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("apiserver-kubelet-client.crt") && text.contains("ca.key"),
            "{text}"
        );
    }

    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = PkiDirectory::new(tmp.path());
        generate(&dir, &cluster("10.0.0.1"));
        for (path, _) in snapshot(tmp.path()) {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let expected = if path.extension().is_some_and(|e| e == "key") {
                0o600
            } else {
                0o644
            };
            assert_eq!(mode, expected, "{}", path.display());
        }
    }
}
