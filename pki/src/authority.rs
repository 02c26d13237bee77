//! Certificate authorities: creating a self-signed CA the way kubeadm does, loading an existing
//! one (with or without its key), issuing leaves, and judging whether an existing leaf is
//! still current.

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::certificate::{CertificateInfo, CertificateSpec};
use crate::key::PrivateKey;

/// kubeadm backdates CAs so that hosts whose clocks lag a little still accept them.
const CA_BACKDATE: Duration = Duration::minutes(5);

/// A CA certificate and, unless the CA is managed outside kinit, its private key.
#[derive(Debug)]
pub struct Authority {
    /// The file stem the CA lives under, such as `ca` or `etcd/ca`; used in messages.
    pub name: String,
    pub certificate: CertificateInfo,
    certificate_pem: String,
    key: Option<PrivateKey>,
}

/// Why an existing leaf certificate cannot be kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    Unreadable(String),
    KeyMismatch,
    WrongIssuer,
    Expired,
    Changed(String),
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::Unreadable(e) => write!(f, "unreadable ({e})"),
            Staleness::KeyMismatch => f.write_str("certificate does not match its key"),
            Staleness::WrongIssuer => f.write_str("not signed by the current CA"),
            Staleness::Expired => f.write_str("expired"),
            Staleness::Changed(what) => f.write_str(what),
        }
    }
}

impl Authority {
    /// Creates a self-signed CA valid for `validity` from five minutes ago.
    pub fn create(
        name: &str,
        common_name: &str,
        key: PrivateKey,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Authority, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.not_before = now - CA_BACKDATE;
        params.not_after = now + validity;
        params.serial_number = Some(random_serial());
        let certificate = params
            .self_signed(key.pair())
            .map_err(|e| Error::Crypto(format!("self-signing {name}: {e}")))?;
        let certificate_pem = certificate.pem();
        Ok(Authority {
            name: name.to_owned(),
            certificate: CertificateInfo::from_der(certificate.der())?,
            certificate_pem,
            key: Some(key),
        })
    }

    /// Loads a CA from PEM. Without a key the CA is external: it can judge leaves, not sign them.
    pub fn from_pem(
        name: &str,
        certificate_pem: &str,
        key_pem: Option<&str>,
    ) -> Result<Authority, Error> {
        let certificate = CertificateInfo::from_pem(certificate_pem)
            .map_err(|e| Error::InvalidFile(format!("{name}.crt"), e.to_string()))?;
        if !certificate.is_ca {
            return Err(Error::InvalidFile(
                format!("{name}.crt"),
                "the certificate is not a CA (basic constraints CA:FALSE)".into(),
            ));
        }
        let key = match key_pem {
            Some(pem) => {
                let key = PrivateKey::from_pem(pem)
                    .map_err(|e| Error::InvalidFile(format!("{name}.key"), e.to_string()))?;
                if key.public_key_der() != certificate.public_key_der {
                    return Err(Error::InvalidFile(
                        format!("{name}.key"),
                        format!("the key does not belong to {name}.crt"),
                    ));
                }
                Some(key)
            }
            None => None,
        };
        Ok(Authority {
            name: name.to_owned(),
            certificate,
            certificate_pem: certificate_pem.to_owned(),
            key,
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn key(&self) -> Option<&PrivateKey> {
        self.key.as_ref()
    }

    /// True when kinit holds the CA's key and so can sign with it.
    pub fn can_sign(&self) -> bool {
        self.key.is_some()
    }

    /// Signs a leaf for `key`. As in kubeadm, the leaf's NotBefore is the CA's NotBefore; its
    /// NotAfter is `validity` from now, but never past the CA's own expiry.
    pub fn issue(
        &self,
        spec: &CertificateSpec,
        key: &PrivateKey,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<String, Error> {
        let ca_key = self.key.as_ref().ok_or_else(|| Error::ExternalCa {
            ca: self.name.clone(),
            subject: spec.common_name.clone(),
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&spec.common_name, spec.organization.as_deref());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.usage.server() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.usage.client() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        for dns in &spec.sans.dns {
            let name = dns
                .clone()
                .try_into()
                .map_err(|e| Error::Crypto(format!("subject alternative name {dns:?}: {e}")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in &spec.sans.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.not_before = self.certificate.not_before;
        params.not_after = (now + validity).min(self.certificate.not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;

        let issuer =
            Issuer::from_ca_cert_der(&self.certificate.der().to_vec().into(), ca_key.pair())
                .map_err(|e| {
                    Error::Crypto(format!("reading {}.crt as an issuer: {e}", self.name))
                })?;
        let certificate = params
            .signed_by(key.pair(), &issuer)
            .map_err(|e| Error::Crypto(format!("signing {}: {e}", spec.common_name)))?;
        Ok(certificate.pem())
    }

    /// Judges an existing leaf and its key against `spec`: `Ok(info)` when it can be kept as it is.
    pub fn check(
        &self,
        certificate_pem: &str,
        key_pem: &str,
        spec: &CertificateSpec,
        now: OffsetDateTime,
    ) -> Result<CertificateInfo, Staleness> {
        let info = CertificateInfo::from_pem(certificate_pem)
            .map_err(|e| Staleness::Unreadable(e.to_string()))?;
        let key =
            PrivateKey::from_pem(key_pem).map_err(|e| Staleness::Unreadable(e.to_string()))?;
        if key.public_key_der() != info.public_key_der {
            return Err(Staleness::KeyMismatch);
        }
        if !info.is_signed_by(&self.certificate) {
            return Err(Staleness::WrongIssuer);
        }
        if info.not_after <= now {
            return Err(Staleness::Expired);
        }
        if let Some(changed) = info.differences(spec) {
            return Err(Staleness::Changed(changed));
        }
        Ok(info)
    }
}

fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A random positive 127-bit serial, as RFC 5280 and Go's crypto/x509 expect.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::{Sans, Usage};
    use crate::key::KeyAlgorithm;

    fn spec() -> CertificateSpec {
        CertificateSpec {
            common_name: "kube-apiserver".into(),
            organization: None,
            usage: Usage::Server,
            sans: ["kubernetes", "10.96.0.1"].into_iter().collect::<Sans>(),
        }
    }

    fn ca(now: OffsetDateTime) -> Authority {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        Authority::create("ca", "kubernetes", key, Duration::days(3650), now).unwrap()
    }

    #[test]
    fn issued_leaf_is_current_and_follows_kubeadm_dates() {
        let now = OffsetDateTime::now_utc();
        let ca = ca(now);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = ca.issue(&spec(), &key, Duration::days(365), now).unwrap();
        let info = ca.check(&pem, key.pem(), &spec(), now).unwrap();
        assert_eq!(info.not_before, ca.certificate.not_before);
        assert!(info.not_before < now);
        assert_eq!(info.issuer_common_name, "kubernetes");
        assert!(!info.is_ca);
        let days = (info.not_after - now).whole_days();
        assert!((364..=365).contains(&days), "{days}");
    }

    #[test]
    fn check_reports_why_a_leaf_is_stale() {
        let now = OffsetDateTime::now_utc();
        let ca = ca(now);
        let other = self::ca(now);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = ca.issue(&spec(), &key, Duration::days(365), now).unwrap();

        let mut changed = spec();
        changed.sans.add("10.0.0.5");
        match ca.check(&pem, key.pem(), &changed, now) {
            Err(Staleness::Changed(why)) => assert!(why.contains("adds 10.0.0.5"), "{why}"),
            other => panic!("expected a SAN change, got {other:?}"),
        }
        assert_eq!(
            other.check(&pem, key.pem(), &spec(), now).unwrap_err(),
            Staleness::WrongIssuer
        );
        let stranger = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(
            ca.check(&pem, stranger.pem(), &spec(), now).unwrap_err(),
            Staleness::KeyMismatch
        );
        let later = now + Duration::days(400);
        assert_eq!(
            ca.check(&pem, key.pem(), &spec(), later).unwrap_err(),
            Staleness::Expired
        );
    }

    #[test]
    fn leaf_never_outlives_its_ca() {
        let now = OffsetDateTime::now_utc();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = Authority::create("ca", "kubernetes", key, Duration::days(30), now).unwrap();
        let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = ca
            .issue(&spec(), &leaf_key, Duration::days(365), now)
            .unwrap();
        let info = CertificateInfo::from_pem(&pem).unwrap();
        assert_eq!(info.not_after, ca.certificate.not_after);
    }

    #[test]
    fn external_ca_cannot_sign() {
        let now = OffsetDateTime::now_utc();
        let ca = ca(now);
        let external = Authority::from_pem("ca", ca.certificate_pem(), None).unwrap();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let err = external
            .issue(&spec(), &key, Duration::days(1), now)
            .unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn a_leaf_is_not_accepted_as_a_ca() {
        let now = OffsetDateTime::now_utc();
        let ca = ca(now);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = ca.issue(&spec(), &key, Duration::days(1), now).unwrap();
        let err = Authority::from_pem("ca", &pem, Some(key.pem())).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }
}
