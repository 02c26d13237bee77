//! Value types of the cluster configuration that check themselves while being read, so that a
//! bad value is reported with its field path and position (`hosts[2].address: "10.0.0.300" is
//! not an IP address`) instead of surfacing later as a failure on a host.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements serde and a string JSON Schema for a type with `FromStr` and `Display`.
///
/// The check runs inside a visitor rather than through `#[serde(try_from)]`: an error raised
/// while the deserializer is still on the scalar is reported at the scalar's line and column
/// with its full field path, while one raised afterwards is attributed to the enclosing mapping.
macro_rules! string_type {
    ($type:ident, $expecting:literal, $description:literal $(, $key:literal : $value:expr)*) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$type, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($type))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": $description,
                    $($key: $value,)*
                })
            }
        }
    };
}

/// True for a DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', each label starting and
/// ending with an alphanumeric, at most 253 characters (Kubernetes' rule for node names).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// A node name: a DNS-1123 subdomain, as Kubernetes requires of Node objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = String;
    fn from_str(text: &str) -> Result<NodeName, String> {
        if is_dns1123_subdomain(text) {
            Ok(NodeName(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a valid node name: use lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters (DNS-1123)"
            ))
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_type!(NodeName, "a node name (a DNS-1123 subdomain such as node-1)", "A DNS-1123 subdomain: lowercase letters, digits, '-' and '.'.",
    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "maxLength": 253);

/// A DNS domain such as the cluster's `cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDomain(String);

impl DnsDomain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DnsDomain {
    fn default() -> DnsDomain {
        DnsDomain("cluster.local".into())
    }
}

impl FromStr for DnsDomain {
    type Err = String;
    fn from_str(text: &str) -> Result<DnsDomain, String> {
        if is_dns1123_subdomain(text) {
            Ok(DnsDomain(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a DNS domain (lowercase labels separated by dots)"
            ))
        }
    }
}

impl fmt::Display for DnsDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_type!(
    DnsDomain,
    "DnsDomain",
    "A DNS domain, such as cluster.local."
);

/// A host's IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub IpAddr);

impl FromStr for Address {
    type Err = String;
    fn from_str(text: &str) -> Result<Address, String> {
        text.parse()
            .map(Address)
            .map_err(|_| format!("{text:?} is not an IP address"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_type!(Address, "an IP address", "An IPv4 or IPv6 address.");

/// A network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("{text:?} is not a CIDR (expected an address and a prefix length, such as 10.244.0.0/16)"))?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; the network is {}",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_type!(
    Cidr,
    "Cidr",
    "A network in CIDR notation, such as 10.244.0.0/16."
);

/// A Kubernetes release, `vMAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubernetesVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> KubernetesVersion {
        KubernetesVersion {
            major,
            minor,
            patch,
        }
    }

    /// True from `major.minor` on.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl FromStr for KubernetesVersion {
    type Err = String;
    fn from_str(text: &str) -> Result<KubernetesVersion, String> {
        let bad = || {
            format!(
                "{text:?} is not a Kubernetes version: expected vMAJOR.MINOR.PATCH, such as v1.30.2"
            )
        };
        let digits = text.strip_prefix('v').unwrap_or(text);
        let parts: Vec<&str> = digits.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(bad());
        };
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse::<u32>().ok()
            }
        };
        match (number(major), number(minor), number(patch)) {
            (Some(major), Some(minor), Some(patch)) => Ok(KubernetesVersion {
                major,
                minor,
                patch,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

string_type!(KubernetesVersion, "a Kubernetes version written as a string, such as v1.30.2", "A Kubernetes release such as v1.30.2.",
    "pattern": "^v?[0-9]+\\.[0-9]+\\.[0-9]+$");

/// `host[:port]`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        }
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address without a port.
        Some((text, None))
    } else {
        match text.split_once(':') {
            Some((host, port)) => Some((host, Some(port))),
            None => Some((text, None)),
        }
    }
}

fn valid_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || is_dns1123_subdomain(&host.to_ascii_lowercase())
}

fn format_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The control-plane endpoint: a load balancer or DNS name in front of the API servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(text: &str) -> Result<Endpoint, String> {
        let bad = || {
            format!(
                "{text:?} is not an endpoint: expected host or host:port, such as api.example.com:6443"
            )
        };
        let (host, port) = split_host_port(text).ok_or_else(bad)?;
        if !valid_host(host) {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
            None => 6443,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", format_host(&self.host), self.port)
    }
}

string_type!(
    Endpoint,
    "Endpoint",
    "host or host:port (default port 6443)."
);

/// One hop of an SSH jump chain, `[user@]host[:port]`, as in OpenSSH's ProxyJump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl FromStr for JumpHost {
    type Err = String;
    fn from_str(text: &str) -> Result<JumpHost, String> {
        let bad = || {
            format!(
                "{text:?} is not a jump host: expected [user@]host[:port], such as admin@bastion.example.com:22"
            )
        };
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return Err(bad()),
            None => (None, text),
        };
        let (host, port) = split_host_port(rest).ok_or_else(bad)?;
        if !valid_host(host) {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
            None => 22,
        };
        Ok(JumpHost {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}:{}", format_host(&self.host), self.port)
    }
}

string_type!(
    JumpHost,
    "JumpHost",
    "[user@]host[:port], as OpenSSH's ProxyJump."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for good in ["a", "node-1", "cp1.example.com", "0"] {
            assert!(good.parse::<NodeName>().is_ok(), "{good}");
        }
        for bad in ["", "Node1", "node_1", "-a", "a-", "a..b", &"x".repeat(254)] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_reject_host_bits() {
        assert!("10.244.0.0/16".parse::<Cidr>().is_ok());
        let err = "10.244.1.0/16".parse::<Cidr>().unwrap_err();
        assert!(err.contains("10.244.0.0/16"), "{err}");
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!("fd00::/64".parse::<Cidr>().is_ok());
    }

    #[test]
    fn versions() {
        let v: KubernetesVersion = "v1.20.2".parse().unwrap();
        assert_eq!(v, KubernetesVersion::new(1, 20, 2));
        assert_eq!(v.to_string(), "v1.20.2");
        assert_eq!(
            "1.30.0".parse::<KubernetesVersion>().unwrap().to_string(),
            "v1.30.0"
        );
        for bad in ["1.20", "v1.20.x", "latest", "v1.+1.2"] {
            assert!(bad.parse::<KubernetesVersion>().is_err(), "{bad}");
        }
        assert!(v.at_least(1, 20) && !v.at_least(1, 21));
    }

    #[test]
    fn endpoints_and_jump_hosts() {
        let e: Endpoint = "api.example.com".parse().unwrap();
        assert_eq!(e.to_string(), "api.example.com:6443");
        let e: Endpoint = "[fd00::1]:443".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("fd00::1", 443));
        assert!("api.example.com:0".parse::<Endpoint>().is_err());
        assert!("bad host:1".parse::<Endpoint>().is_err());
        let j: JumpHost = "admin@bastion:2222".parse().unwrap();
        assert_eq!(
            (j.user.as_deref(), j.host.as_str(), j.port),
            (Some("admin"), "bastion", 2222)
        );
        assert_eq!(
            "10.0.0.5".parse::<JumpHost>().unwrap().to_string(),
            "10.0.0.5:22"
        );
        assert!("@bastion".parse::<JumpHost>().is_err());
    }
}
