//! The console's HTTPS certificate: the operator's own files, or on first run a console CA
//! and a server certificate it signs, kept in the console's directory (keys 0600). Browsers
//! are told to trust `console-ca.crt` once; the server certificate can then be reissued.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kinit_pki::{Authority, CertificateSpec, KeyAlgorithm, PrivateKey, Sans, Usage};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

const CA_VALIDITY: time::Duration = time::Duration::days(3650);
const SERVER_VALIDITY: time::Duration = time::Duration::days(365);

/// The certificate and key files to serve, generating them in `dir` when `given` is `None`
/// and they do not exist yet. The names are the server certificate's subject alternative
/// names (the listen address is always among them).
pub fn certificate(
    given: Option<(PathBuf, PathBuf)>,
    dir: &Path,
    names: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(files) = given {
        return Ok(files);
    }
    let (cert, key) = (dir.join("console.crt"), dir.join("console.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)?;
    let now = time::OffsetDateTime::now_utc();
    let (ca_cert, ca_key) = (dir.join("console-ca.crt"), dir.join("console-ca.key"));
    let authority = if ca_cert.exists() && ca_key.exists() {
        Authority::from_pem(
            "console-ca",
            &std::fs::read_to_string(&ca_cert)?,
            Some(&std::fs::read_to_string(&ca_key)?),
        )?
    } else {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)?;
        kinit_pki::write_atomic(&ca_key, key.pem().as_bytes(), kinit_pki::KEY_MODE)?;
        let authority = Authority::create("console-ca", "kinit-console-ca", key, CA_VALIDITY, now)?;
        kinit_pki::write_atomic(
            &ca_cert,
            authority.certificate_pem().as_bytes(),
            kinit_pki::CERT_MODE,
        )?;
        authority
    };
    let mut sans = Sans::default();
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"])
    {
        sans.add(name);
    }
    let spec = CertificateSpec {
        common_name: "kinit-console".into(),
        organization: None,
        usage: Usage::Server,
        sans,
    };
    let server_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)?;
    let pem = authority.issue(&spec, &server_key, SERVER_VALIDITY, now)?;
    kinit_pki::write_atomic(&key, server_key.pem().as_bytes(), kinit_pki::KEY_MODE)?;
    kinit_pki::write_atomic(&cert, pem.as_bytes(), kinit_pki::CERT_MODE)?;
    Ok((cert, key))
}

/// The names a certificate for `listen` should carry.
pub fn names_for(listen: IpAddr) -> Vec<String> {
    let mut names = vec![listen.to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_owned());
    }
    names.retain(|n| !n.is_empty() && n != "0.0.0.0" && n != "::");
    names
}

pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
