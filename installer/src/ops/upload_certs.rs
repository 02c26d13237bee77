//! The control-plane certificates a machine needs to join as a control plane in local mode, as
//! kubeadm's `upload-certs` phase shares them: the CAs' certificates and keys and the
//! service-account key pair, each sealed with AES-256-GCM under a random certificate key, in
//! the Secret `kube-system/kinit-certs`. The cluster never holds the key: `kinit init` prints it
//! once in the control-plane join command. Bootstrap-token holders may read the Secret (they
//! need it before they have credentials of their own), which is why it is sealed, and it is
//! owned by a short-lived token's Secret, so the garbage collector deletes it when that token
//! expires.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde_json::{Value, json};

use super::bootstrap::{BootstrapError, Discovered};
use crate::engine::probe::{self, TlsFiles, Url};
use crate::engine::transport::local::LocalTransport;
use crate::engine::transport::{Session, Stdin};

pub const SECRET: &str = "kinit-certs";
const KUBECTL: &str = "kubectl --kubeconfig=/etc/kubernetes/admin.conf";

/// The files every control plane shares (paths under `pki/`) and their modes; each control
/// plane issues its own leaves from them.
pub const SHARED: &[(&str, u32)] = &[
    ("ca.crt", 0o644),
    ("ca.key", 0o600),
    ("front-proxy-ca.crt", 0o644),
    ("front-proxy-ca.key", 0o600),
    ("sa.key", 0o600),
    ("sa.pub", 0o644),
    ("etcd/ca.crt", 0o644),
    ("etcd/ca.key", 0o600),
];

/// A random 256-bit certificate key, hex-encoded as kubeadm prints it.
pub fn new_certificate_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

fn cipher(certificate_key: &str) -> Result<Aes256Gcm, String> {
    let bytes = hex::decode(certificate_key.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or("the certificate key must be 64 hexadecimal digits (as `kinit init` prints it)")?;
    Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)))
}

/// `nonce || ciphertext+tag`, with a fresh random nonce.
pub fn seal(certificate_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let cipher = cipher(certificate_key)?;
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let mut sealed = nonce.to_vec();
    sealed.extend(
        cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| "encryption failed")?,
    );
    Ok(sealed)
}

pub fn open(certificate_key: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
    let cipher = cipher(certificate_key)?;
    if sealed.len() < 12 + 16 {
        return Err("a sealed certificate is truncated".into());
    }
    let (nonce, ciphertext) = sealed.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map_err(|_| {
            "the certificate key does not open the cluster's certificates: use the key printed by \
         `kinit init` (or a new one from `kinit token create --certificate-key` on a control plane)"
                .to_owned()
        })
}

/// Secret data keys cannot hold `/`.
fn data_key(file: &str) -> String {
    file.replace('/', "-")
}

/// The Secret holding `files` (name, content) sealed with `certificate_key`, owned by the
/// bootstrap token Secret `owner` (name, uid).
pub fn secret(
    certificate_key: &str,
    files: &[(&str, Vec<u8>)],
    owner: (&str, &str),
) -> Result<Value, String> {
    let mut data = serde_json::Map::new();
    for (file, content) in files {
        data.insert(
            data_key(file),
            json!(STANDARD.encode(seal(certificate_key, content)?)),
        );
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": SECRET,
            "namespace": "kube-system",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Secret", "name": owner.0, "uid": owner.1,
                "blockOwnerDeletion": true, "controller": true,
            }],
        },
        "data": data,
    }))
}

/// Seals the shared files of the control plane behind `session` into the cluster's Secret,
/// replacing any earlier one, owned by the token `token_id` (so it lives as long as that token).
pub async fn upload(
    session: &Session,
    certificate_key: &str,
    token_id: &str,
) -> Result<(), BootstrapError> {
    let fail = |what: &str, e: String| BootstrapError::Cluster(format!("{what}: {e}"));
    let mut files = Vec::new();
    for (file, _) in SHARED {
        let path = format!("/etc/kubernetes/pki/{file}");
        let output = session
            .exec(&format!("cat {path}"), Stdin::none(), true)
            .await
            .map_err(|e| fail(&path, e.to_string()))?;
        if !output.success() {
            return Err(fail(&path, output.stderr_tail(2)));
        }
        files.push((*file, output.stdout));
    }
    let owner = format!("bootstrap-token-{token_id}");
    let uid = session
        .exec(
            &format!("{KUBECTL} -n kube-system get secret {owner} -o jsonpath='{{.metadata.uid}}'"),
            Stdin::none(),
            true,
        )
        .await
        .map_err(|e| fail("reading the token's uid", e.to_string()))?;
    if !uid.success() {
        return Err(fail("reading the token's uid", uid.stderr_tail(3)));
    }
    let secret = secret(certificate_key, &files, (&owner, uid.stdout_text().trim()))
        .map_err(|e| fail("sealing the certificates", e))?;
    // Through standard input: the sealed keys never appear in arguments.
    let output = session
        .exec(
            &format!(
                "{KUBECTL} -n kube-system delete secret {SECRET} --ignore-not-found >/dev/null && {KUBECTL} create -f -"
            ),
            Stdin::bytes(serde_json::to_vec(&secret).expect("serialisable")),
            true,
        )
        .await
        .map_err(|e| fail("uploading the certificates", e.to_string()))?;
    if !output.success() {
        return Err(fail("uploading the certificates", output.stderr_tail(3)));
    }
    Ok(())
}

/// Fetches the Secret with the bootstrap token over TLS verified with the discovered CA and
/// opens every file; a wrong key is refused before anything is written.
pub async fn download(
    discovered: &Discovered,
    endpoint: &str,
    token: &kinit_pki::BootstrapToken,
    certificate_key: &str,
) -> Result<Vec<(&'static str, u32, Vec<u8>)>, BootstrapError> {
    let fail = |e: String| BootstrapError::Discovery(e);
    cipher(certificate_key).map_err(fail)?;
    let url = Url::parse(&format!(
        "https://{endpoint}/api/v1/namespaces/kube-system/secrets/{SECRET}"
    ))
    .map_err(fail)?;
    let ca_file = tempfile::NamedTempFile::new().map_err(|e| fail(e.to_string()))?;
    std::fs::write(ca_file.path(), &discovered.ca_pem).map_err(|e| fail(e.to_string()))?;
    let tls = TlsFiles {
        ca: Some(ca_file.path()),
        client_cert: None,
        client_key: None,
    };
    let (status, body) = probe::http_get(&LocalTransport, &url, &tls, false, Some(&token.expose()))
        .await
        .map_err(fail)?;
    match status {
        200 => {}
        404 => {
            return Err(fail(format!(
                "the cluster holds no shared certificates (kube-system/{SECRET}): they expire with \
                 the token they were uploaded with; on a control plane, run \
                 `kinit token create --certificate-key` for a new control-plane join command"
            )));
        }
        status => {
            return Err(fail(format!(
                "reading kube-system/{SECRET} answered HTTP {status}"
            )));
        }
    }
    let secret: Value = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
    let mut files = Vec::new();
    for (file, mode) in SHARED {
        let sealed = secret["data"][data_key(file)]
            .as_str()
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| fail(format!("kube-system/{SECRET} has no {file}")))?;
        files.push((*file, *mode, open(certificate_key, &sealed).map_err(fail)?));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_only_with_their_key() {
        let key = new_certificate_key();
        assert_eq!(key.len(), 64);
        let sealed = seal(&key, b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"), "not in clear");
        assert_eq!(open(&key, &sealed).unwrap(), b"-----BEGIN PRIVATE KEY-----");
        let other = new_certificate_key();
        assert!(open(&other, &sealed).unwrap_err().contains("does not open"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&key, &tampered).is_err(), "tampering is detected");
        assert!(seal("abc", b"x").unwrap_err().contains("64 hexadecimal"));
    }

    #[test]
    fn the_secret_is_owned_by_its_token() {
        let key = new_certificate_key();
        let files = vec![
            ("ca.key", b"key".to_vec()),
            ("etcd/ca.key", b"etcd".to_vec()),
        ];
        let secret = secret(&key, &files, ("bootstrap-token-abcdef", "uid-1")).unwrap();
        assert_eq!(
            secret["metadata"]["ownerReferences"][0]["name"],
            "bootstrap-token-abcdef"
        );
        let sealed = secret["data"]["etcd-ca.key"].as_str().unwrap();
        let sealed = STANDARD.decode(sealed).unwrap();
        assert_eq!(open(&key, &sealed).unwrap(), b"etcd");
    }
}
