//! Bootstrap tokens (`[a-z0-9]{6}.[a-z0-9]{16}`): the id is public, the secret authenticates a
//! joining kubelet and signs the cluster-info ConfigMap. Generated from the operating system's
//! CSPRNG through `rand`'s thread-local generator (ChaCha reseeded from the OS).

use std::fmt;
use std::str::FromStr;

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    pub fn generate() -> BootstrapToken {
        let mut rng = rand::rng();
        let mut part = |len: usize| -> String {
            (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        let id = part(6);
        let secret = part(16);
        BootstrapToken { id, secret }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The full token, `id.secret`. Deliberately not `Display`, so it is never formatted by accident.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a bootstrap token has the form [a-z0-9]{{6}}.[a-z0-9]{{16}}, such as abcdef.0123456789abcdef"
)]
pub struct MalformedToken;

impl FromStr for BootstrapToken {
    type Err = MalformedToken;

    fn from_str(text: &str) -> Result<BootstrapToken, MalformedToken> {
        let (id, secret) = text.split_once('.').ok_or(MalformedToken)?;
        let valid =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
        if valid(id, 6) && valid(secret, 16) {
            Ok(BootstrapToken {
                id: id.to_owned(),
                secret: secret.to_owned(),
            })
        } else {
            Err(MalformedToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = BootstrapToken::generate();
        let b = BootstrapToken::generate();
        assert_ne!(a, b);
        let text = a.expose();
        assert_eq!(text.len(), 23);
        assert_eq!(text.parse::<BootstrapToken>().unwrap(), a);
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = BootstrapToken::generate();
        assert!(!format!("{token:?}").contains(token.secret()));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef:0123456789abcdef",
            "abcdef.0123456789abcdef0",
        ] {
            assert!(bad.parse::<BootstrapToken>().is_err(), "{bad}");
        }
        assert!("abcdef.0123456789abcdef".parse::<BootstrapToken>().is_ok());
    }
}
