//! Certificates: what a certificate must say ([`CertificateSpec`]), and reading an existing one
//! back ([`CertificateInfo`]) to decide whether it still says it. Issuing lives with the
//! [`Authority`](crate::Authority) that signs.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;

/// The extended key usages a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

impl Usage {
    pub fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerAndClient)
    }

    pub fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerAndClient)
    }

    fn from_flags(server: bool, client: bool) -> Option<Usage> {
        match (server, client) {
            (true, true) => Some(Usage::ServerAndClient),
            (true, false) => Some(Usage::Server),
            (false, true) => Some(Usage::Client),
            (false, false) => None,
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Server => "server",
            Usage::Client => "client",
            Usage::ServerAndClient => "server+client",
        })
    }
}

/// Subject alternative names, kept sorted so that two sets compare regardless of order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Sans {
    /// Adds a name, as an IP address when it parses as one and as a DNS name otherwise.
    pub fn add(&mut self, name: &str) {
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                self.ips.insert(ip);
            }
            Err(_) => {
                self.dns.insert(name.to_owned());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty()
    }

    /// Every name, DNS names first, as openssl and kubeadm list them.
    pub fn names(&self) -> Vec<String> {
        self.dns
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Sans {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Sans {
        let mut sans = Sans::default();
        for name in iter {
            sans.add(name.as_ref());
        }
        sans
    }
}

/// What a leaf certificate must state: subject, usage and names. Validity and issuer come from
/// the authority that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    pub common_name: String,
    pub organization: Option<String>,
    pub usage: Usage,
    pub sans: Sans,
}

/// The facts kinit needs from an existing certificate.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub issuer_common_name: String,
    pub usage: Option<Usage>,
    pub sans: Sans,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    der: Vec<u8>,
}

impl CertificateInfo {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<CertificateInfo, Error> {
        let (_, block) = parse_x509_pem(pem.as_bytes())
            .map_err(|e| Error::Crypto(format!("not a PEM certificate: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(Error::Crypto(format!(
                "expected a CERTIFICATE PEM block, found {}",
                block.label
            )));
        }
        CertificateInfo::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<CertificateInfo, Error> {
        let cert = parse(der)?;
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            it.next()
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let common_name = first(&mut subject.iter_common_name());
        let organizations = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect();
        let issuer_common_name = first(&mut cert.issuer().iter_common_name());

        let usage = match cert.extended_key_usage() {
            Ok(Some(eku)) => Usage::from_flags(eku.value.server_auth, eku.value.client_auth),
            _ => None,
        };
        let mut sans = Sans::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        sans.dns.insert((*dns).to_owned());
                    }
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.ips.insert(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let timestamp = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| Error::Crypto(format!("certificate date out of range: {e}")))
        };
        Ok(CertificateInfo {
            common_name,
            organizations,
            issuer_common_name,
            usage,
            sans,
            not_before: timestamp(cert.validity().not_before.timestamp())?,
            not_after: timestamp(cert.validity().not_after.timestamp())?,
            is_ca: cert.is_ca(),
            public_key_der: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }

    /// What this certificate states, as a spec to issue it again.
    pub fn as_spec(&self) -> CertificateSpec {
        CertificateSpec {
            common_name: self.common_name.clone(),
            organization: self.organizations.first().cloned(),
            usage: self.usage.unwrap_or(Usage::Client),
            sans: self.sans.clone(),
        }
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether `issuer`'s key signed this certificate.
    pub fn is_signed_by(&self, issuer: &CertificateInfo) -> bool {
        let (Ok(cert), Ok(ca)) = (parse(&self.der), parse(&issuer.der)) else {
            return false;
        };
        cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// How this certificate differs from `spec`, or `None` when it states exactly what the spec asks.
    pub fn differences(&self, spec: &CertificateSpec) -> Option<String> {
        let mut found = Vec::new();
        if self.common_name != spec.common_name {
            found.push(format!(
                "common name is {:?}, expected {:?}",
                self.common_name, spec.common_name
            ));
        }
        let expected_orgs: Vec<String> = spec.organization.iter().cloned().collect();
        if self.organizations != expected_orgs {
            found.push(format!(
                "organization is {:?}, expected {:?}",
                self.organizations, expected_orgs
            ));
        }
        if self.usage != Some(spec.usage) {
            let shown = self.usage.map_or("none".to_owned(), |u| u.to_string());
            found.push(format!("usage is {shown}, expected {}", spec.usage));
        }
        if self.sans != spec.sans {
            let missing: Vec<String> = spec
                .sans
                .names()
                .into_iter()
                .filter(|n| !self.sans.names().contains(n))
                .collect();
            let extra: Vec<String> = self
                .sans
                .names()
                .into_iter()
                .filter(|n| !spec.sans.names().contains(n))
                .collect();
            let mut change = Vec::new();
            if !missing.is_empty() {
                change.push(format!("adds {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                change.push(format!("drops {}", extra.join(", ")));
            }
            found.push(format!(
                "subject alternative names changed: {}",
                change.join("; ")
            ));
        }
        if found.is_empty() {
            None
        } else {
            Some(found.join("; "))
        }
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::Crypto(format!("not an X.509 certificate: {e}")))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_sort_names_into_dns_and_ip() {
        let sans: Sans = ["node1", "10.0.0.1", "::1", "kubernetes"]
            .into_iter()
            .collect();
        assert_eq!(sans.dns.len(), 2);
        assert_eq!(sans.ips.len(), 2);
        assert_eq!(sans.names(), ["kubernetes", "node1", "10.0.0.1", "::1"]);
    }

    #[test]
    fn usage_flags() {
        assert_eq!(Usage::from_flags(true, true), Some(Usage::ServerAndClient));
        assert!(Usage::ServerAndClient.server() && Usage::ServerAndClient.client());
        assert!(!Usage::Client.server());
    }

    #[test]
    fn rejects_non_certificates() {
        assert!(CertificateInfo::from_pem("hello").is_err());
        let key = crate::PrivateKey::generate(crate::KeyAlgorithm::EcdsaP256).unwrap();
        assert!(CertificateInfo::from_pem(key.pem()).is_err());
    }
}
