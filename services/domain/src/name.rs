//! DNS-label names: the ids of catalog entities.

use std::fmt;

/// Longest DNS label (RFC 1123), the limit Kubernetes applies to names.
pub const MAX_NAME_LEN: usize = 63;

/// A lowercase RFC 1123 DNS label: 1..=63 chars of `[a-z0-9-]`, starting and
/// ending with a letter or digit. Safe as a NATS subject token and a URL path
/// segment, and readable by people (invariant 8).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

/// As the string it is (`"payments"`, not `Name("payments")`): a name in a
/// message reads the same whether it was formatted with `{}` or `{:?}`.
impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

/// Why a string is not a [`Name`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("must contain only lowercase letters, digits and '-'")]
    InvalidChar,
    #[error("must start and end with a lowercase letter or digit")]
    BadEdge,
}

impl Name {
    /// Parses a DNS label.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if value.is_empty() {
            return Err(NameError::Empty);
        }
        if value.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NameError::InvalidChar);
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(NameError::BadEdge);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "payments-api", "x1", "0abc", &"a".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"a".repeat(64)), Err(NameError::TooLong));
        assert_eq!(Name::parse("Payments"), Err(NameError::InvalidChar));
        assert_eq!(Name::parse("a.b"), Err(NameError::InvalidChar));
        assert_eq!(Name::parse("a_b"), Err(NameError::InvalidChar));
        assert_eq!(Name::parse("-a"), Err(NameError::BadEdge));
        assert_eq!(Name::parse("a-"), Err(NameError::BadEdge));
    }
}
