//! Entities of the kinds Paved does not model as aggregates of their own —
//! Backstage's API, Resource, Domain, User and Location, and any kind a
//! plugin defines — stored as the descriptor they came as, with the
//! relations their well-known fields name.
//!
//! The descriptor of a Group, System or Component is stored too, beside
//! the team, system or service it became: the document as last imported,
//! which the export gives back as long as the typed entity still says what
//! it says (fields Paved does not model, such as `providesApis` or a link's
//! icon, survive a round trip that way, and name their relations).
//!
//! Identity follows Backstage: a ref is `[kind:][namespace/]name`, names are
//! `[a-zA-Z0-9]` runs separated by `-`, `_` or `.` (at most 63 characters),
//! namespaces lowercase DNS labels, and refs compare case-insensitively while
//! the entity keeps the spelling it was given. The aggregate id is derived
//! from the lowercase ref ([`EntityRef::id`]): a readable, NATS-safe label
//! with a digest, so `artist_lookup.v2` and `artist-lookup-v2` stay two.
//!
//! Who may change one: admins anything; a member of the team its
//! `spec.owner` names (a group of the default namespace that exists as a
//! team) when it is theirs before and after; while the owner is not in the
//! catalog, only admins.

use std::fmt;

use serde_json::Value;

use super::kinds::KindSpec;
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::Rejection;
use crate::validate::Violations;

/// Largest descriptor stored, as compact JSON (an API's inline definition
/// included).
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Most relations one descriptor may name.
pub const MAX_RELATIONS: usize = 1_000;
/// Kinds with aggregates of their own, imported as teams, systems and
/// services; their stored descriptors only accompany those.
pub const TYPED_KINDS: [&str; 3] = ["Group", "System", "Component"];

/// `[kind:][namespace/]name`, as given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Backstage's entity name: `[a-zA-Z0-9]` runs separated by one of `-_.`,
/// at most 63 characters.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    let bytes = name.as_bytes();
    let sep = |b: u8| matches!(b, b'-' | b'_' | b'.');
    if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || sep(b)) {
        return Err("may hold only letters, digits and - _ .");
    }
    if sep(bytes[0])
        || sep(bytes[bytes.len() - 1])
        || bytes.windows(2).any(|w| sep(w[0]) && sep(w[1]))
    {
        return Err("must start and end with a letter or digit, one separator at a time");
    }
    Ok(())
}

/// Backstage's namespace: a lowercase DNS label.
pub fn check_namespace(namespace: &str) -> Result<(), &'static str> {
    Name::parse(namespace)
        .map(|_| ())
        .map_err(|_| "must be a lowercase DNS label (a-z, 0-9, -)")
}

/// Backstage's kind: a letter, then letters and digits, at most 63.
pub fn check_kind(kind: &str) -> Result<(), &'static str> {
    let mut bytes = kind.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() && kind.len() <= 63 => {}
        _ => return Err("must start with a letter and be at most 63 characters"),
    }
    if bytes.all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err("may hold only letters and digits")
    }
}

impl EntityRef {
    /// Parses `[kind:][namespace/]name`, filling what is left out.
    pub fn parse(text: &str, default_kind: Option<&str>, namespace: &str) -> Result<Self, String> {
        let text = text.trim();
        let (kind, rest) = match text.split_once(':') {
            Some((k, rest)) => (Some(k), rest),
            None => (default_kind, text),
        };
        let Some(kind) = kind else {
            return Err(format!("{text:?} needs a kind (kind:name)"));
        };
        let (namespace, name) = rest.split_once('/').unwrap_or((namespace, rest));
        check_kind(kind).map_err(|e| format!("kind of {text:?} {e}"))?;
        check_namespace(namespace).map_err(|e| format!("namespace of {text:?} {e}"))?;
        check_name(name).map_err(|e| format!("name of {text:?} {e}"))?;
        Ok(Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// What refs are compared by: Backstage's are case-insensitive.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// Is this the same entity as `other` (case-insensitively)?
    pub fn same(&self, other: &EntityRef) -> bool {
        self.key() == other.key()
    }

    /// The aggregate id: kind and name lowercased to a DNS label, cut to
    /// fit, then 10 hex digits of the lowercase ref's SHA-256.
    pub fn id(&self) -> Name {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.key().as_bytes());
        let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        let mut readable = String::new();
        for c in format!("{}-{}", self.kind, self.name).chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if !(c == '-' && readable.ends_with('-')) {
                readable.push(c);
            }
        }
        readable.truncate(63 - 11);
        let readable = readable.trim_end_matches('-');
        Name::parse(&format!("{readable}-{hex}")).expect("a DNS label")
    }

    /// The team this ref names, if it is a group of the default namespace
    /// whose name is a team name.
    pub fn team(&self) -> Option<Name> {
        (self.kind.eq_ignore_ascii_case("group") && self.namespace == "default")
            .then(|| Name::parse(&self.name).ok())
            .flatten()
    }
}

/// A relation a descriptor's well-known field names (Backstage's type,
/// e.g. `ownedBy`), from the entity to `target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Relation {
    pub kind: &'static str,
    pub target: EntityRef,
}

/// The type of the relation seen from its target (Backstage's pairs).
pub fn inverse(kind: &str) -> &'static str {
    match kind {
        "ownedBy" => "ownerOf",
        "partOf" => "hasPart",
        "dependsOn" => "dependencyOf",
        "dependencyOf" => "dependsOn",
        "providesApi" => "apiProvidedBy",
        "consumesApi" => "apiConsumedBy",
        "memberOf" => "hasMember",
        "hasMember" => "memberOf",
        "childOf" => "parentOf",
        "parentOf" => "childOf",
        _ => "relatedTo",
    }
}

/// The well-known fields that name other entities: (`spec` field, relation,
/// the kind a ref without one has, one ref or a list).
const RELATION_FIELDS: [(&str, &str, Option<&str>, bool); 13] = [
    ("owner", "ownedBy", Some("Group"), false),
    ("system", "partOf", Some("System"), false),
    ("domain", "partOf", Some("Domain"), false),
    ("subdomainOf", "partOf", Some("Domain"), false),
    ("subcomponentOf", "partOf", Some("Component"), false),
    ("dependsOn", "dependsOn", None, true),
    ("dependencyOf", "dependencyOf", None, true),
    ("providesApis", "providesApi", Some("API"), true),
    ("consumesApis", "consumesApi", Some("API"), true),
    ("memberOf", "memberOf", Some("Group"), true),
    // A group's descriptor.
    ("members", "hasMember", Some("User"), true),
    ("parent", "childOf", Some("Group"), false),
    ("children", "parentOf", Some("Group"), true),
];

/// The entity a stored descriptor is, read from its `kind` and
/// `metadata.name|namespace` (namespace `default` when left out).
pub fn entity_ref(document: &Value) -> Result<EntityRef, Rejection> {
    let mut v = Violations::new();
    let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
    let kind = text("/kind").unwrap_or_default();
    let name = text("/metadata/name").unwrap_or_default();
    let namespace = text("/metadata/namespace").unwrap_or("default");
    if let Err(e) = check_kind(kind) {
        v.push("kind", e);
    }
    if let Err(e) = check_name(name) {
        v.push("metadata.name", e);
    }
    if let Err(e) = check_namespace(namespace) {
        v.push("metadata.namespace", e);
    }
    v.finish()?;
    Ok(EntityRef {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// The relations a descriptor's well-known `spec` fields name, refs
/// relative to the entity's namespace; a bad ref is a violation on its field.
pub fn relations(document: &Value, namespace: &str, v: &mut Violations) -> Vec<Relation> {
    let mut out = Vec::new();
    let Some(spec) = document.get("spec") else {
        return out;
    };
    for (field, kind, default_kind, many) in RELATION_FIELDS {
        let Some(value) = spec.get(field) else {
            continue;
        };
        let refs: Vec<(String, &Value)> = match (value, many) {
            (Value::Array(items), true) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("spec.{field}[{i}]"), item))
                .collect(),
            (Value::Null, _) => Vec::new(),
            (item, false) => vec![(format!("spec.{field}"), item)],
            (_, true) => {
                v.push(format!("spec.{field}"), "must be a list of entity refs");
                continue;
            }
        };
        for (at, item) in refs {
            match item
                .as_str()
                .ok_or_else(|| "must be an entity ref".to_owned())
                .and_then(|s| EntityRef::parse(s, default_kind.or(Some("Component")), namespace))
            {
                Ok(target) => out.push(Relation { kind, target }),
                Err(e) => v.push(at, e),
            }
        }
    }
    if out.len() > MAX_RELATIONS {
        v.push("spec", format!("names more than {MAX_RELATIONS} entities"));
    }
    out.sort();
    out.dedup();
    out
}

/// What a descriptor must be to be stored, whoever stores it: a ref
/// ([`entity_ref`]), an `apiVersion`, `metadata` (and `spec`, if any)
/// mappings, at most [`MAX_DOCUMENT_BYTES`], a spec its kind's model takes
/// ([`KindSpec`]: what Backstage requires of an API, Resource, Domain, User
/// or Location), and well-formed refs in its well-known fields.
pub fn check_document(document: &Value) -> Result<EntityRef, Rejection> {
    let entity_ref = entity_ref(document)?;
    let mut v = Violations::new();
    KindSpec::read(document, &mut v);
    if !v.mentions("apiVersion")
        && !document
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains('/'))
    {
        v.push(
            "apiVersion",
            "must be a group/version such as backstage.io/v1alpha1",
        );
    }
    if !document.get("metadata").is_some_and(Value::is_object) {
        v.push("metadata", "must be a mapping");
    }
    if !v.mentions("spec") && document.get("spec").is_some_and(|s| !s.is_object()) {
        v.push("spec", "must be a mapping");
    }
    let size = serde_json::to_vec(document).map_or(usize::MAX, |b| b.len());
    if size > MAX_DOCUMENT_BYTES {
        v.push(
            "document",
            format!("is {size} bytes, at most {MAX_DOCUMENT_BYTES}"),
        );
    }
    // A ref the typed spec refused already is not reported twice.
    let mut refs = Violations::new();
    relations(document, &entity_ref.namespace, &mut refs);
    for f in refs.into_vec() {
        if !v.mentions(&f.field) {
            v.push(f.field, f.description);
        }
    }
    v.finish()?;
    Ok(entity_ref)
}

/// The owner a descriptor names (`spec.owner`), if any; a Group's is the
/// group itself (its team's members change it).
pub fn entity_owner(document: &Value, namespace: &str) -> Option<EntityRef> {
    if document.get("kind").and_then(Value::as_str) == Some("Group") {
        let name = document.pointer("/metadata/name")?.as_str()?;
        return EntityRef::parse(name, Some("Group"), namespace).ok();
    }
    let owner = document.pointer("/spec/owner")?.as_str()?;
    EntityRef::parse(owner, Some("Group"), namespace).ok()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub entity_ref: EntityRef,
    /// The descriptor as it came (JSON of the YAML document).
    pub document: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntityCommand {
    /// Store this descriptor, or replace the one stored.
    Store { document: Value },
    /// Take the entity out of the catalog.
    Remove,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntityEvent {
    Stored {
        entity_ref: EntityRef,
        document: Value,
    },
    Removed {
        entity_ref: EntityRef,
    },
}

impl EntityEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Stored { .. } => "EntityStored",
            Self::Removed { .. } => "EntityRemoved",
        }
    }
}

impl From<EntityEvent> for Event {
    fn from(e: EntityEvent) -> Self {
        Event::Entity(e)
    }
}

/// May the principal change what `owner` owns? A team's members may; for
/// an owner not in the catalog as a team, only admins.
fn may_act_for(
    ctx: &Context<'_>,
    owner: Option<&EntityRef>,
    what: &EntityRef,
) -> Result<(), Rejection> {
    if ctx.principal.is_admin() {
        return Ok(());
    }
    match owner.and_then(EntityRef::team) {
        Some(team) if ctx.refs.team(&team).is_some() && ctx.principal.acts_for(&team) => Ok(()),
        Some(team) if ctx.refs.team(&team).is_some() => Err(Rejection::PermissionDenied(format!(
            "{} may not change {what}: owned by team {team}",
            ctx.principal.name
        ))),
        _ => Err(Rejection::PermissionDenied(format!(
            "{} may not change {what}: its owner is not a team in the catalog, so only admins may",
            ctx.principal.name
        ))),
    }
}

impl Aggregate for Option<Entity> {
    const KIND: AggregateKind = AggregateKind::Entity;
    type Command = EntityCommand;
    type Event = EntityEvent;

    fn references(&self, command: &EntityCommand, _: &References) -> Vec<AggregateRef> {
        let mut owners = Vec::new();
        if let EntityCommand::Store { document } = command
            && let Ok(r) = entity_ref(document)
        {
            owners.extend(entity_owner(document, &r.namespace));
        }
        if let Some(e) = self {
            owners.extend(entity_owner(&e.document, &e.entity_ref.namespace));
        }
        owners
            .iter()
            .filter_map(EntityRef::team)
            .map(|t| AggregateRef::team(&t))
            .collect()
    }

    fn decide(
        &self,
        command: &EntityCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<EntityEvent>, Rejection> {
        if !ctx.principal.may_write() {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not change the catalog: read-only",
                ctx.principal.name
            )));
        }
        let current = self.as_ref();
        if let Some(e) = current {
            may_act_for(
                ctx,
                entity_owner(&e.document, &e.entity_ref.namespace).as_ref(),
                &e.entity_ref,
            )?;
        }
        let EntityCommand::Store { document } = command else {
            return match current {
                Some(e) => Ok(vec![EntityEvent::Removed {
                    entity_ref: e.entity_ref.clone(),
                }]),
                None => Err(Rejection::NotFound(format!("entity {}", ctx.id))),
            };
        };
        let entity_ref = check_document(document)?;
        if &entity_ref.id() != ctx.id {
            return Err(Rejection::invalid(
                "metadata.name",
                "does not match the entity's id",
            ));
        }
        may_act_for(
            ctx,
            entity_owner(document, &entity_ref.namespace).as_ref(),
            &entity_ref,
        )?;
        match current {
            Some(e) if &e.document == document => Ok(Vec::new()),
            _ => Ok(vec![EntityEvent::Stored {
                entity_ref,
                document: document.clone(),
            }]),
        }
    }

    fn evolve(&mut self, event: &EntityEvent) {
        match event {
            EntityEvent::Stored {
                entity_ref,
                document,
            } => {
                *self = Some(Entity {
                    entity_ref: entity_ref.clone(),
                    document: document.clone(),
                })
            }
            EntityEvent::Removed { .. } => *self = None,
        }
    }

    fn select(event: &Event) -> Option<&EntityEvent> {
        match event {
            Event::Entity(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;
    use crate::scenario::{Scenario, invalid_fields, n};
    use serde_json::json;

    fn api(name: &str, owner: &str) -> Value {
        json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "API",
            "metadata": {"name": name, "namespace": "ops", "title": "Artist lookup"},
            "spec": {"type": "openapi", "lifecycle": "experimental", "owner": owner,
                     "system": "artists", "definition": "openapi: 3.0.0"}
        })
    }

    /// Team `name` in the catalog the scenario decides against.
    fn with_team(s: &mut Scenario<Option<Entity>>, name: &str) {
        s.refs.insert_team(
            n(name),
            Some(crate::catalog::Team {
                name: n(name),
                profile: Default::default(),
                parent: None,
                members: Default::default(),
                retired: None,
            }),
        );
    }

    fn scenario_for(document: &Value) -> Scenario<Option<Entity>> {
        let r = entity_ref(document).unwrap();
        Scenario::new(r.id().as_str())
    }

    #[test]
    fn backstage_names_and_refs_parse_and_compare_case_insensitively() {
        for ok in ["ArtistLookup", "artist_lookup.v2", "a", "A-b_c.D"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let r = EntityRef::parse("api:ops/ArtistLookup", None, "default").unwrap();
        let same = EntityRef::parse("API:ops/artistlookup", None, "default").unwrap();
        assert!(r.same(&same));
        assert_eq!(r.id(), same.id());
        assert_eq!(r.to_string(), "api:ops/ArtistLookup", "keeps its spelling");
        let owner = EntityRef::parse("payments", Some("Group"), "default").unwrap();
        assert_eq!(owner.team(), Some(n("payments")));
        assert!(EntityRef::parse("thing", None, "default").is_err());
        // Two names Backstage tells apart stay two ids, each a DNS label.
        let dotted = EntityRef::parse("api:artist_lookup.v2", None, "default").unwrap();
        let dashed = EntityRef::parse("api:artist-lookup-v2", None, "default").unwrap();
        assert_ne!(dotted.id(), dashed.id());
        assert!(dotted.id().as_str().starts_with("api-artist-lookup-v2-"));
        let long =
            EntityRef::parse(&format!("Component:{}", "a".repeat(63)), None, "default").unwrap();
        assert!(long.id().as_str().len() <= 63);
    }

    #[test]
    fn well_known_fields_become_relations_and_bad_refs_name_their_field() {
        let mut doc = api("artist-api", "group:artists");
        doc["spec"]["dependsOn"] = json!(["resource:artists-db", "component:default/web"]);
        doc["spec"]["providesApis"] = json!(["other"]);
        let mut v = Violations::new();
        let rels = relations(&doc, "ops", &mut v);
        assert!(v.is_empty());
        let shown: Vec<String> = rels
            .iter()
            .map(|r| format!("{} {}", r.kind, r.target))
            .collect();
        assert_eq!(
            shown,
            [
                "dependsOn component:default/web",
                "dependsOn resource:ops/artists-db",
                "ownedBy group:ops/artists",
                "partOf System:ops/artists",
                "providesApi API:ops/other",
            ]
        );
        doc["spec"]["consumesApis"] = json!(["bad name"]);
        doc["spec"]["memberOf"] = json!("not-a-list");
        let mut v = Violations::new();
        relations(&doc, "ops", &mut v);
        let fields: Vec<String> = v.into_vec().into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["spec.consumesApis[0]", "spec.memberOf"]);
    }

    #[test]
    fn a_descriptor_is_stored_as_it_came_once_and_only_by_its_owner() {
        let doc = api("ArtistLookup", "group:default/payments");
        let mut s = scenario_for(&doc);
        with_team(&mut s, "payments");
        let store = EntityCommand::Store {
            document: doc.clone(),
        };
        let events = s.when(store.clone()).unwrap();
        assert!(
            matches!(&events[..], [EntityEvent::Stored { entity_ref, .. }] if entity_ref.name == "ArtistLookup")
        );
        let s = s.given(events);
        assert!(s.when(store.clone()).unwrap().is_empty(), "the same again");
        let s = s.by(Principal::member("mallory", n("growth")));
        assert!(matches!(
            s.when(store.clone()),
            Err(Rejection::PermissionDenied(_))
        ));
        assert!(matches!(
            s.when(EntityCommand::Remove),
            Err(Rejection::PermissionDenied(_))
        ));
        let s = s.by(Principal::member("ana", n("payments")));
        // Its owner's member may not give it to a team that is not theirs.
        let mut moved = doc.clone();
        moved["spec"]["owner"] = json!("growth");
        let mut s = s;
        s.refs.insert_team(n("growth"), None);
        assert!(matches!(
            s.when(EntityCommand::Store { document: moved }),
            Err(Rejection::PermissionDenied(_))
        ));
        assert!(matches!(
            &s.when(EntityCommand::Remove).unwrap()[..],
            [EntityEvent::Removed { .. }]
        ));
    }

    #[test]
    fn a_groups_descriptor_is_its_own_teams_to_change() {
        let doc = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Group",
                         "metadata": {"name": "payments"}, "spec": {"type": "team", "children": []}});
        let mut s = scenario_for(&doc);
        with_team(&mut s, "payments");
        let store = EntityCommand::Store { document: doc };
        let s = s.by(Principal::member("ana", n("payments")));
        assert!(s.when(store.clone()).is_ok());
        let s = s.by(Principal::member("mallory", n("growth")));
        assert!(matches!(s.when(store), Err(Rejection::PermissionDenied(_))));
    }

    #[test]
    fn an_owner_not_in_the_catalog_leaves_the_entity_to_admins() {
        let doc = api("artist-api", "group:default/artists");
        let s = scenario_for(&doc);
        let store = EntityCommand::Store { document: doc };
        assert!(s.when(store.clone()).is_ok(), "an admin may");
        let s = s.by(Principal::member("ana", n("artists")));
        assert!(matches!(s.when(store), Err(Rejection::PermissionDenied(_))));
    }

    #[test]
    fn bad_shapes_and_huge_documents_are_refused_by_field() {
        let mut doc = api("artist-api", "group:artists");
        doc["spec"] = json!(["not", "a", "mapping"]);
        let s = scenario_for(&doc);
        assert_eq!(
            invalid_fields(s.when(EntityCommand::Store {
                document: doc.clone()
            })),
            ["spec"]
        );
        let mut doc = api("artist-api", "group:artists");
        doc["apiVersion"] = json!(1);
        doc["spec"]["definition"] = json!("x".repeat(MAX_DOCUMENT_BYTES));
        let s = scenario_for(&doc);
        assert_eq!(
            invalid_fields(s.when(EntityCommand::Store { document: doc })),
            ["apiVersion", "document"]
        );
        // Stored under another entity's id: refused.
        let doc = api("artist-api", "group:artists");
        let s = Scenario::<Option<Entity>>::new("api-other-0000000000");
        assert_eq!(
            invalid_fields(s.when(EntityCommand::Store { document: doc })),
            ["metadata.name"]
        );
        let s = Scenario::<Option<Entity>>::new("api-other-0000000000").by(Principal::reader("r"));
        assert!(matches!(
            s.when(EntityCommand::Store {
                document: api("x", "y")
            }),
            Err(Rejection::PermissionDenied(_))
        ));
    }
}
