//! Private keys: generation in the configured algorithm, loading the encodings operators bring
//! (PKCS#8, SEC1 and PKCS#1, as written by openssl and by kubeadm), and the public halves
//! Kubernetes reads (`sa.pub`).

use std::fmt;

use rcgen::{KeyPair, PublicKeyData};

use crate::Error;

/// The key algorithm for newly generated keys. Existing keys keep whatever algorithm they have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: small, fast, accepted by every Kubernetes component.
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, kubeadm's default.
    Rsa2048,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
        })
    }
}

/// A private key together with the PEM text it was read from or written as, so that an
/// existing key file is never re-encoded.
pub struct PrivateKey {
    pair: KeyPair,
    pem: String,
}

impl fmt::Debug for PrivateKey {
    // Never print key material, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.pair.algorithm())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<PrivateKey, Error> {
        let pair = match algorithm {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
        .map_err(|e| Error::Crypto(format!("generating a {algorithm} key: {e}")))?;
        let pem = pair.serialize_pem();
        Ok(PrivateKey { pair, pem })
    }

    /// Reads a PEM private key in PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<PrivateKey, Error> {
        let pair = KeyPair::from_pem(pem)
            .map_err(|e| Error::Crypto(format!("not a usable PEM private key: {e}")))?;
        Ok(PrivateKey {
            pair,
            pem: pem.to_owned(),
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The DER SubjectPublicKeyInfo, to compare with a certificate's.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// The public key as a PKIX `PUBLIC KEY` PEM block, the format of kubeadm's `sa.pub`.
    pub fn public_key_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        if self.pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else {
            KeyAlgorithm::Rsa2048
        }
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem() {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
            let key = PrivateKey::generate(algorithm).unwrap();
            let again = PrivateKey::from_pem(key.pem()).unwrap();
            assert_eq!(again.public_key_der(), key.public_key_der());
            assert_eq!(again.algorithm(), algorithm);
            assert!(
                key.public_key_pem()
                    .starts_with("-----BEGIN PUBLIC KEY-----")
            );
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(PrivateKey::from_pem("not a key").is_err());
        assert!(
            PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
