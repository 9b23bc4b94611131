//! The specs of the well-known kinds Paved stores as entities — API,
//! Resource, Domain, User and Location — typed as Backstage's catalog model
//! defines them (its `API.v1alpha1`, `Resource.v1alpha1`, `Domain.v1alpha1`,
//! `User.v1alpha1` and `Location.v1alpha1` kind schemas): what each
//! requires, and the shape of what it may hold. A descriptor Backstage would
//! refuse is refused here, with the field and the reason, so an entity
//! Paved holds is one Backstage takes (its entity provider publishes them).
//!
//! Fields a spec does not name here are allowed and kept, as Backstage
//! keeps them: the descriptor is stored as it came; these types check it and
//! give typed access to it. Refs in the well-known relation fields are
//! checked by [`relations`](super::entity::relations) on top.

use serde::{Deserialize, Deserializer, de};
use serde_json::Value;

use crate::validate::Violations;

/// The `apiVersion`s Backstage accepts for its own kinds.
pub const API_VERSIONS: [&str; 2] = ["backstage.io/v1alpha1", "backstage.io/v1beta1"];

/// A string Backstage requires to be non-empty (`minLength: 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(Self(s))
    }
}

/// An API: an interface a component provides, with its definition
/// (OpenAPI, AsyncAPI, GraphQL, gRPC… as text).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Well-known: `openapi`, `asyncapi`, `graphql`, `grpc`.
    #[serde(rename = "type")]
    pub api_type: Text,
    /// Well-known: `experimental`, `production`, `deprecated`.
    pub lifecycle: Text,
    pub owner: Text,
    /// The definition itself (the CLI resolves `$text` before sending it);
    /// its size is bounded by the descriptor's.
    pub definition: Text,
    pub system: Option<Text>,
}

/// A piece of infrastructure: a database, a bucket, a cluster.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    #[serde(rename = "type")]
    pub resource_type: Text,
    pub owner: Text,
    #[serde(default)]
    pub depends_on: Vec<Text>,
    #[serde(default)]
    pub dependency_of: Vec<Text>,
    pub system: Option<Text>,
}

/// A bounded context grouping systems.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainSpec {
    pub owner: Text,
    pub subdomain_of: Option<Text>,
    #[serde(rename = "type")]
    pub domain_type: Option<Text>,
}

/// A person's profile: every field optional, none empty.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub display_name: Option<Text>,
    pub email: Option<Text>,
    pub picture: Option<Text>,
}

/// A person. `memberOf` must be there (it may be empty): the groups the
/// user is a direct member of, one view of the membership a Group's
/// `members` is the other of.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    pub profile: Option<UserProfile>,
    pub member_of: Vec<Text>,
}

/// A marker of where other descriptors are: one `target` or several
/// `targets`, of a `type` (`url`, `file`) inherited when left out.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationSpec {
    #[serde(rename = "type")]
    pub location_type: Option<Text>,
    pub target: Option<Text>,
    #[serde(default)]
    pub targets: Vec<Text>,
    /// `required` (the default) or `optional`.
    pub presence: Option<Presence>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Required,
    Optional,
}

/// The spec of a descriptor, typed by its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum KindSpec {
    Api(ApiSpec),
    Resource(ResourceSpec),
    Domain(DomainSpec),
    User(UserSpec),
    Location(LocationSpec),
    /// A kind without a model here: a plugin's, or one Paved models as an
    /// aggregate of its own (Group, System, Component), stored as it came.
    Other,
}

impl KindSpec {
    /// Reads `document`'s spec by its kind, recording what Backstage would
    /// refuse in `v` (`spec.<field>` paths) and giving `Other` then.
    pub fn read(document: &Value, v: &mut Violations) -> KindSpec {
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
        let known = matches!(kind, "API" | "Resource" | "Domain" | "User" | "Location");
        if !known {
            return KindSpec::Other;
        }
        let api_version = document.get("apiVersion").and_then(Value::as_str);
        if !api_version.is_some_and(|a| API_VERSIONS.contains(&a)) {
            v.push(
                "apiVersion",
                format!("a {kind} must be {}", API_VERSIONS.join(" or ")),
            );
        }
        let Some(spec) = document.get("spec") else {
            v.push("spec", format!("is required for a {kind}"));
            return KindSpec::Other;
        };
        let typed = match kind {
            "API" => typed(spec).map(KindSpec::Api),
            "Resource" => typed(spec).map(KindSpec::Resource),
            "Domain" => typed(spec).map(KindSpec::Domain),
            "User" => typed(spec).map(KindSpec::User),
            _ => typed(spec).map(KindSpec::Location),
        };
        typed.unwrap_or_else(|(field, reason)| {
            v.push(field, format!("{reason} (Backstage's {kind} kind)"));
            KindSpec::Other
        })
    }
}

/// Deserializes a spec, or names the field that fails and why.
fn typed<T: for<'de> Deserialize<'de>>(spec: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let at = e.path().to_string();
        let message = e.inner().to_string();
        let within = |field: &str| match at.as_str() {
            "." => format!("spec.{field}"),
            _ => format!("spec.{at}.{field}"),
        };
        // serde names a missing field in its message, at its parent's path.
        match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) => (within(field), "is required".to_owned()),
            None if at == "." => ("spec".to_owned(), message),
            None => (format!("spec.{at}"), message),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(document: Value) -> (KindSpec, Vec<(String, String)>) {
        let mut v = Violations::new();
        let spec = KindSpec::read(&document, &mut v);
        let found = v
            .into_vec()
            .into_iter()
            .map(|f| (f.field, f.description))
            .collect();
        (spec, found)
    }

    fn doc(kind: &str, spec: Value) -> Value {
        json!({"apiVersion": "backstage.io/v1alpha1", "kind": kind,
               "metadata": {"name": "x"}, "spec": spec})
    }

    #[test]
    fn what_backstage_requires_of_each_kind_is_required_with_its_field() {
        let cases = [
            (
                doc(
                    "API",
                    json!({"type": "openapi", "lifecycle": "production", "owner": "a"}),
                ),
                "spec.definition",
                "is required",
            ),
            (
                doc(
                    "API",
                    json!({"type": "", "lifecycle": "p", "owner": "a", "definition": "x"}),
                ),
                "spec.type",
                "must not be empty",
            ),
            (
                doc(
                    "API",
                    json!({"type": "grpc", "lifecycle": "p", "owner": "a", "definition": {"a": 1}}),
                ),
                "spec.definition",
                "expected a string",
            ),
            (
                doc("Resource", json!({"owner": "a"})),
                "spec.type",
                "is required",
            ),
            (
                doc(
                    "Resource",
                    json!({"type": "db", "owner": "a", "dependsOn": ["x", ""]}),
                ),
                "spec.dependsOn[1]",
                "must not be empty",
            ),
            (doc("Domain", json!({})), "spec.owner", "is required"),
            (
                doc("User", json!({"profile": {"email": "a@b"}})),
                "spec.memberOf",
                "is required",
            ),
            (
                doc("User", json!({"memberOf": [], "profile": {"email": ""}})),
                "spec.profile.email",
                "must not be empty",
            ),
            (
                doc("Location", json!({"targets": "./a.yaml"})),
                "spec.targets",
                "expected a sequence",
            ),
            (
                doc(
                    "Location",
                    json!({"target": "./a.yaml", "presence": "maybe"}),
                ),
                "spec.presence",
                "unknown variant",
            ),
        ];
        for (document, field, reason) in cases {
            let (spec, found) = read(document.clone());
            assert_eq!(spec, KindSpec::Other, "{document}");
            assert_eq!(found.len(), 1, "{document}: {found:?}");
            assert_eq!(found[0].0, field, "{document}");
            assert!(found[0].1.contains(reason), "{document}: {found:?}");
            assert!(found[0].1.contains("Backstage's"), "{found:?}");
        }
        let mut no_spec = doc("Domain", json!({}));
        no_spec.as_object_mut().unwrap().remove("spec");
        assert_eq!(read(no_spec).1[0].0, "spec");
        let mut other_version = doc("User", json!({"memberOf": []}));
        other_version["apiVersion"] = json!("example.com/v1");
        assert_eq!(read(other_version).1[0].0, "apiVersion");
    }

    #[test]
    fn a_valid_spec_reads_typed_and_keeps_nothing_from_other_kinds() {
        let (spec, found) = read(doc(
            "User",
            json!({"memberOf": ["team-b", "group:ops/sre"], "extra": {"kept": true},
                   "profile": {"displayName": "Jenny Doe", "jobTitle": "Engineer"}}),
        ));
        assert!(found.is_empty(), "{found:?}");
        let KindSpec::User(user) = spec else {
            panic!("{spec:?}")
        };
        assert_eq!(user.member_of.len(), 2);
        assert_eq!(
            user.profile.unwrap().display_name,
            Some(Text("Jenny Doe".into()))
        );
        let (spec, found) = read(doc(
            "API",
            json!({"type": "openapi", "lifecycle": "experimental", "owner": "group:a",
                   "definition": "openapi: 3.0.0", "system": null}),
        ));
        assert!(found.is_empty(), "{found:?}");
        assert!(matches!(spec, KindSpec::Api(ApiSpec { system: None, .. })));
        // A plugin's kind, and a kind Paved models as an aggregate: unchecked here.
        for kind in ["Template", "Component", "Group", "Thing"] {
            let (spec, found) = read(doc(kind, json!({"anything": 1})));
            assert_eq!(spec, KindSpec::Other);
            assert!(found.is_empty(), "{kind}: {found:?}");
        }
    }
}
