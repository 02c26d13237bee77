//! The CA pin a joining node checks during discovery: `sha256:` followed by the hex SHA-256 of
//! the CA certificate's DER SubjectPublicKeyInfo, exactly as kubeadm's `pubkeypin` computes it.

use sha2::{Digest, Sha256};

use crate::certificate::CertificateInfo;

pub const PREFIX: &str = "sha256:";

/// The pin of a certificate's public key.
pub fn ca_pin(certificate: &CertificateInfo) -> String {
    format!(
        "{PREFIX}{}",
        hex::encode(Sha256::digest(&certificate.public_key_der))
    )
}

/// Whether `pin` (as a user typed it; case-insensitive hex) names `certificate`'s key.
pub fn matches(pin: &str, certificate: &CertificateInfo) -> bool {
    let wanted = ca_pin(certificate);
    pin.trim().eq_ignore_ascii_case(&wanted)
}

/// Checks the form of a pin: `sha256:` and 64 hex digits.
pub fn is_well_formed(pin: &str) -> bool {
    pin.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authority, KeyAlgorithm, PrivateKey};
    use time::{Duration, OffsetDateTime};

    #[test]
    fn pin_is_sha256_of_the_subject_public_key_info() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let spki = key.public_key_der();
        let ca = Authority::create(
            "ca",
            "kubernetes",
            key,
            Duration::days(1),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let pin = ca_pin(&ca.certificate);
        assert_eq!(
            pin,
            format!("sha256:{}", hex::encode(Sha256::digest(&spki)))
        );
        assert!(is_well_formed(&pin));
        assert!(matches(
            &pin.to_uppercase().replace("SHA256:", "sha256:"),
            &ca.certificate
        ));
        assert!(!is_well_formed("sha256:abc"));
        assert!(!is_well_formed(&pin.replace("sha256:", "md5:")));
    }
}
