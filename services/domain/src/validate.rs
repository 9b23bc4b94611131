//! Field rules shared by every command. A [`Violations`] collects every
//! problem of a command, so a client learns all of them in one answer.

use std::collections::BTreeMap;

use crate::name::Name;
use crate::rejection::{FieldViolation, Rejection};

pub const MAX_DISPLAY_NAME: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_REASON: usize = 1024;
pub const MAX_URL: usize = 2048;
pub const MAX_EMAIL: usize = 254;
pub const MAX_CHAT_CHANNEL: usize = 128;
pub const MAX_MEMBER: usize = 254;
pub const MAX_TAGS: usize = 32;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_VALUE: usize = 63;
pub const MAX_ANNOTATION_VALUE: usize = 4096;
pub const MAX_LINKS: usize = 32;

/// Collects field violations; [`Violations::finish`] turns them into a rejection.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok` when nothing was pushed, else [`Rejection::Invalid`] with everything.
    pub fn finish(self) -> Result<(), Rejection> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Rejection::Invalid(self.0))
        }
    }

    /// Whether a violation of `field` is recorded already.
    pub fn mentions(&self, field: &str) -> bool {
        self.0.iter().any(|f| f.field == field)
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }

    /// Parses a DNS-label name, recording why not.
    pub fn name(&mut self, field: &str, value: &str) -> Option<Name> {
        match Name::parse(value) {
            Ok(name) => Some(name),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// Parses an optional name: "" is `None`.
    pub fn optional_name(&mut self, field: &str, value: &str) -> Option<Name> {
        if value.is_empty() {
            None
        } else {
            self.name(field, value)
        }
    }

    /// One line of text (no control characters), at most `max` characters.
    pub fn line(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.push(field, format!("must be at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.push(field, "must not contain control characters");
        }
    }

    /// Free text: newlines and tabs allowed, other control characters not.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.push(field, format!("must be at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            self.push(field, "must not contain control characters");
        }
    }

    /// A required reason for a retirement or deprecation.
    pub fn reason(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(field, "is required");
        } else {
            self.text(field, value, MAX_REASON);
        }
    }

    /// An optional absolute http(s) URL.
    pub fn url(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        if value.len() > MAX_URL {
            self.push(field, format!("must be at most {MAX_URL} characters"));
        } else if host.is_none_or(str::is_empty) {
            self.push(field, "must be an absolute http:// or https:// URL");
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.push(field, "must not contain whitespace");
        }
    }

    /// An optional e-mail address (a plausibility check, not RFC 5322).
    pub fn email(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let plausible = value.len() <= MAX_EMAIL
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if !plausible {
            self.push(field, "must be an e-mail address like team@example.com");
        }
    }

    /// A member id: 1..=254 printable characters without whitespace.
    pub fn member(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.push(field, "is required");
        } else if value.chars().count() > MAX_MEMBER
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.push(
                field,
                format!("must be 1..={MAX_MEMBER} characters without whitespace"),
            );
        }
    }

    /// Backstage tags: `^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$`, at most 63 characters each.
    pub fn tags(&mut self, field: &str, tags: &[String]) {
        if tags.len() > MAX_TAGS {
            self.push(field, format!("at most {MAX_TAGS} tags"));
            return;
        }
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'+' | b'#')
                })
        };
        for (i, tag) in tags.iter().enumerate() {
            if tag.len() > 63 || !tag.split('-').all(part_ok) {
                self.push(
                    format!("{field}[{i}]"),
                    "must be 1..=63 characters of [a-z0-9:+#] separated by single '-'",
                );
            } else if tags[..i].contains(tag) {
                self.push(format!("{field}[{i}]"), "duplicate tag");
            }
        }
    }

    /// Kubernetes-style label or annotation map: qualified keys, bounded values.
    pub fn key_values(
        &mut self,
        field: &str,
        map: &BTreeMap<String, String>,
        max_value: usize,
        label_values: bool,
    ) {
        if map.len() > MAX_LABELS {
            self.push(field, format!("at most {MAX_LABELS} entries"));
            return;
        }
        for (key, value) in map {
            if !qualified_key(key) {
                self.push(
                    format!("{field}[{key}]"),
                    "key must be [prefix/]name: prefix a DNS subdomain, name 1..=63 of [A-Za-z0-9-_.] starting and ending alphanumeric",
                );
            }
            if value.chars().count() > max_value {
                self.push(
                    format!("{field}[{key}]"),
                    format!("value must be at most {max_value} characters"),
                );
            } else if label_values && !value.is_empty() && !segment(value) {
                self.push(
                    format!("{field}[{key}]"),
                    "value must be [A-Za-z0-9-_.], starting and ending alphanumeric",
                );
            } else if value.chars().any(|c| c.is_control() && c != '\n') {
                self.push(
                    format!("{field}[{key}]"),
                    "value must not contain control characters",
                );
            }
        }
    }
}

/// `name` or `prefix/name` as Kubernetes label keys (and Backstage annotation keys).
fn qualified_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    prefix_ok && name.len() <= 63 && segment(name)
}

fn segment(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut Violations)) -> bool {
        let mut v = Violations::new();
        f(&mut v);
        v.is_empty()
    }

    #[test]
    fn urls() {
        assert!(check(|v| v.url("u", "")));
        assert!(check(|v| v.url("u", "https://docs.example.com/x?y#z")));
        assert!(!check(|v| v.url("u", "ftp://x")));
        assert!(!check(|v| v.url("u", "https://")));
        assert!(!check(|v| v.url("u", "https://a b")));
    }

    #[test]
    fn emails() {
        assert!(check(|v| v.email("e", "team@example.com")));
        assert!(!check(|v| v.email("e", "team")));
        assert!(!check(|v| v.email("e", "@example.com")));
        assert!(!check(|v| v.email("e", "a@b")));
    }

    #[test]
    fn tags_follow_backstage() {
        assert!(check(
            |v| v.tags("t", &["java".into(), "c++".into(), "a-b".into()])
        ));
        assert!(!check(|v| v.tags("t", &["Java".into()])));
        assert!(!check(|v| v.tags("t", &["a--b".into()])));
        assert!(!check(|v| v.tags("t", &["a".into(), "a".into()])));
    }

    #[test]
    fn keys_follow_kubernetes() {
        let map = |k: &str| BTreeMap::from([(k.to_string(), "v".to_string())]);
        assert!(check(|v| v.key_values("l", &map("app"), 63, true)));
        assert!(check(|v| v.key_values(
            "l",
            &map("argocd/app-name"),
            63,
            true
        )));
        assert!(check(|v| v.key_values(
            "l",
            &map("backstage.io/techdocs-ref"),
            63,
            true
        )));
        assert!(!check(|v| v.key_values("l", &map("a/b/c"), 63, true)));
        assert!(!check(|v| v.key_values("l", &map("-x"), 63, true)));
        assert!(!check(|v| v.key_values(
            "l",
            &map("Bad.Prefix/x"),
            63,
            true
        )));
    }
}
