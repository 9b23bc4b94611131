//! Backstage descriptor import and export. Kinds Group, System and
//! Component become teams, systems and services; every other kind (API,
//! Resource, Domain, User, Location, a plugin's) is stored as it came
//! (`paved_domain::catalog::Entity`) and exported unchanged.
//!
//! Import makes the catalog match the file for every entity the file names:
//! it validates every document first (errors name the document's index, its
//! name and the field), then issues the same commands a client would, in
//! dependency order: groups (parents first), systems, components, then
//! dependencies. An entity already as described appends nothing, so
//! importing the same file twice appends nothing the second time.
//!
//! Mapping (both directions):
//! - Group: `metadata.name`, `spec.profile.displayName|email`, `spec.parent`,
//!   `spec.members` (user refs); chat channel in annotation `paved.dev/chat-channel`.
//! - System: `metadata.name|title|description`, `spec.owner`.
//! - Component: `metadata.name|description|tags|links|labels|annotations`,
//!   `spec.type|lifecycle|owner|system|dependsOn` (component refs; other
//!   kinds such as `resource:` are not modelled by Paved and are ignored).
//!   Paved fields Backstage lacks travel as annotations: `paved.dev/tier`,
//!   `paved.dev/docs-url`, `paved.dev/repository-url`,
//!   `paved.dev/deprecation-reason`. Without them, the repository URL comes
//!   from `backstage.io/source-location` (`url:` form) or
//!   `github.com/project-slug`, and the docs URL from a link titled "docs".
//!   `paved.dev/*` annotations are not stored as annotations.
//! - SLOs are not part of Backstage descriptors and are left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use paved_domain::catalog::{
    Entity, EntityCommand, ImportCommand, ImportReceipt, ImportResult, Lifecycle, Link,
    RepositoryClaim, RepositoryCommand, Service, ServiceCommand, ServiceSpec, ServiceType,
    SourceLocation, SpecField, System, SystemCommand, TYPED_KINDS, Team, TeamCommand, TeamProfile,
    check_document, claim_id, may_join_system, receipt_id, relations, repository_to_claim,
};
use paved_domain::validate::{self, Violations};
use paved_domain::{Aggregate, Context, FieldViolation, Name, Principal, References, Rejection};
use paved_eventlog::{CommandMeta, ExecuteError, Executed, Executor};
use paved_proto::v1 as pb;
use serde_json::json;
use serde_yaml_ng::Value;
use sqlx::PgPool;
use tonic::Status;

use super::dry_run::CatalogCopy;
use crate::error;

pub const ANNOTATION_TIER: &str = "paved.dev/tier";
pub const ANNOTATION_DOCS: &str = "paved.dev/docs-url";
pub const ANNOTATION_REPOSITORY: &str = "paved.dev/repository-url";
pub const ANNOTATION_DEPRECATION: &str = "paved.dev/deprecation-reason";
pub const ANNOTATION_CHAT: &str = "paved.dev/chat-channel";
const PAVED_PREFIX: &str = "paved.dev/";
/// Most documents one import takes.
pub const MAX_DOCUMENTS: usize = 20_000;
/// Deepest nesting of flow collections (`[…]`, `{…}`) accepted. The YAML
/// parser takes time quadratic in it (50,000 unclosed `{a: ` took 6 s), and
/// no descriptor needs more than a few levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses, in one linear pass, YAML whose flow collections nest deeper than
/// [`MAX_FLOW_DEPTH`] (brackets inside quoted scalars and comments do not count).
fn check_flow_depth(yaml: &str) -> Result<(), Status> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut previous = b'\n';
    let bytes = yaml.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
            comment = false;
            // A double-quoted scalar may span lines; a single-quoted one too.
        } else if comment {
        } else if let Some(q) = quote {
            if q == b'"' && b == b'\\' {
                i += 1;
            } else if b == q {
                // '' inside a single-quoted scalar is an escaped quote.
                if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    quote = None;
                }
            }
        } else {
            match b {
                b'#' if previous.is_ascii_whitespace() => comment = true,
                b'"' | b'\'' if previous.is_ascii_whitespace() || b"[{,:".contains(&previous) => {
                    quote = Some(b)
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(error::invalid_field(
                            "yaml",
                            format!(
                                "line {line}: flow collections ([...], {{...}}) nest deeper than {MAX_FLOW_DEPTH} levels"
                            ),
                        ));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = b;
        i += 1;
    }
    Ok(())
}

/// Parses off the async runtime (it is CPU work), stopping between
/// documents once the caller has gone.
async fn parse_off_runtime(yaml: Arc<str>) -> Result<Documents, Status> {
    struct Cancel(Arc<AtomicBool>);
    impl Drop for Cancel {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let _on_drop = Cancel(cancelled.clone());
    tokio::task::spawn_blocking(move || {
        check_flow_depth(&yaml)?;
        parse(&yaml, &cancelled)
    })
    .await
    .map_err(|e| error::internal(&e))?
}
/// Commands of one phase in flight at once.
const CONCURRENCY: usize = 64;

struct GroupDoc {
    index: usize,
    name: Name,
    profile: TeamProfile,
    parent: Option<Name>,
    members: BTreeSet<String>,
}

struct SystemDoc {
    index: usize,
    name: Name,
    owner: Name,
    display_name: String,
    description: String,
}

struct ComponentDoc {
    index: usize,
    name: Name,
    owner: Name,
    spec: ServiceSpec,
    deprecation: Option<String>,
    depends_on: BTreeSet<Name>,
}

/// A document of a kind without an aggregate of its own, stored as it came.
struct EntityDoc {
    index: usize,
    label: String,
    id: Name,
    document: serde_json::Value,
    /// A typed entity's descriptor that Paved's export reproduces: stored
    /// only to update one stored before.
    optional: bool,
}

impl ComponentDoc {
    /// The service this document describes, as the read model would show it.
    fn as_service(&self) -> pb::Service {
        pb::Service {
            name: self.name.to_string(),
            owner: self.owner.to_string(),
            spec: Some(paved_eventlog::codec::spec_to_proto(&self.spec)),
            dependencies: self
                .depends_on
                .iter()
                .map(|d| pb::Dependency {
                    service: d.to_string(),
                    ..Default::default()
                })
                .collect(),
            deprecation_reason: self.deprecation.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

#[derive(Default)]
struct Documents {
    groups: Vec<GroupDoc>,
    systems: Vec<SystemDoc>,
    components: Vec<ComponentDoc>,
    entities: Vec<EntityDoc>,
    /// The descriptors of the groups, systems and components, as they came.
    companions: Vec<EntityDoc>,
}

/// Reads one document; violations are recorded with `documents[i].<path>`.
struct DocReader<'a> {
    v: &'a mut Violations,
    index: usize,
    label: String,
}

impl DocReader<'_> {
    fn err(&mut self, path: &str, description: impl std::fmt::Display) {
        self.v.push(
            format!("documents[{}].{path}", self.index),
            format!("{}: {description}", self.label),
        );
    }

    fn get<'v>(&self, doc: &'v Value, path: &str) -> Option<&'v Value> {
        path.split('.').try_fold(doc, |v, key| v.get(key))
    }

    fn string(&mut self, doc: &Value, path: &str) -> String {
        match self.get(doc, path) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(_) => {
                self.err(path, "must be a string");
                String::new()
            }
        }
    }

    fn strings(&mut self, doc: &Value, path: &str) -> Vec<String> {
        match self.get(doc, path) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        self.err(&format!("{path}[{i}]"), "must be a string");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.err(path, "must be a list of strings");
                Vec::new()
            }
        }
    }

    fn map(&mut self, doc: &Value, path: &str) -> BTreeMap<String, String> {
        match self.get(doc, path) {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Value::String(k), Value::String(v)) => Some((k.clone(), v.clone())),
                    (Value::String(k), Value::Number(n)) => Some((k.clone(), n.to_string())),
                    (Value::String(k), Value::Bool(b)) => Some((k.clone(), b.to_string())),
                    _ => {
                        self.err(path, "keys and values must be strings");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.err(path, "must be a map of strings");
                BTreeMap::new()
            }
        }
    }

    fn name(&mut self, path: &str, value: &str) -> Option<Name> {
        match Name::parse(value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(path, format!("{value:?} {e} (Paved names are DNS labels)"));
                None
            }
        }
    }

    /// `[kind:][namespace/]name` with kind `expected` (or none) and namespace `default`.
    fn entity_ref(&mut self, path: &str, raw: &str, expected: &str) -> Option<Name> {
        let (kind, rest) = match raw.split_once(':') {
            Some((k, r)) => (Some(k.to_ascii_lowercase()), r),
            None => (None, raw),
        };
        if kind.as_deref().is_some_and(|k| k != expected) {
            self.err(path, format!("{raw:?} must refer to a {expected}"));
            return None;
        }
        let name = match rest.split_once('/') {
            Some(("default", n)) => n,
            Some((ns, _)) => {
                self.err(
                    path,
                    format!("namespace {ns:?} is not supported (only \"default\")"),
                );
                return None;
            }
            None => rest,
        };
        self.name(path, name)
    }
}

fn parse(yaml: &str, cancelled: &AtomicBool) -> Result<Documents, Status> {
    // A UTF-8 byte order mark, as editors on Windows write it.
    let yaml = yaml.strip_prefix('\u{feff}').unwrap_or(yaml);
    let mut v = Violations::new();
    let mut docs = Documents::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Status::cancelled("the import was cancelled"));
        }
        if index >= MAX_DOCUMENTS {
            return Err(Status::resource_exhausted(format!(
                "at most {MAX_DOCUMENTS} documents per import"
            )));
        }
        let doc: Value = match serde::Deserialize::deserialize(de) {
            Ok(doc) => doc,
            Err(e) => {
                v.push(
                    format!("documents[{index}]"),
                    format!("not valid YAML: {e}"),
                );
                break;
            }
        };
        if doc.is_null() {
            continue;
        }
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let raw_name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut r = DocReader {
            v: &mut v,
            index,
            label: format!("{kind} {raw_name:?}"),
        };
        if !TYPED_KINDS.contains(&kind.as_str()) {
            // Any other kind: stored as it came, checked by the domain.
            let document = match serde_json::to_value(&doc) {
                Ok(d) => d,
                Err(e) => {
                    r.err("metadata", format!("cannot be stored: {e}"));
                    continue;
                }
            };
            match check_document(&document) {
                Ok(er) => {
                    if let Some(first) = seen.insert((String::new(), er.key()), index) {
                        r.err("metadata.name", format!("duplicate of documents[{first}]"));
                    }
                    let label = r.label.clone();
                    docs.entities.push(EntityDoc {
                        index,
                        label,
                        id: er.id(),
                        document,
                        optional: false,
                    });
                }
                Err(Rejection::Invalid(violations)) => {
                    for fv in violations {
                        r.err(&fv.field, fv.description);
                    }
                }
                Err(other) => r.err("kind", other),
            }
            continue;
        }
        let api_version = r.string(&doc, "apiVersion");
        if !api_version.starts_with("backstage.io/") {
            r.err("apiVersion", "must be backstage.io/v1alpha1 or v1beta1");
        }
        if let Some(first) = seen.insert((kind.clone(), raw_name.clone()), index) {
            r.err("metadata.name", format!("duplicate of documents[{first}]"));
        }
        if r.string(&doc, "metadata.namespace").as_str() != ""
            && r.string(&doc, "metadata.namespace") != "default"
        {
            r.err(
                "metadata.namespace",
                "only the default namespace is supported",
            );
        }
        let name = r.name("metadata.name", &raw_name);
        let annotations = r.map(&doc, "metadata.annotations");
        let typed_before = docs.groups.len() + docs.systems.len() + docs.components.len();
        match kind.as_str() {
            "Group" => {
                let profile = TeamProfile {
                    display_name: r.string(&doc, "spec.profile.displayName"),
                    email: r.string(&doc, "spec.profile.email"),
                    chat_channel: annotations
                        .get(ANNOTATION_CHAT)
                        .cloned()
                        .unwrap_or_default(),
                };
                let mut pv = Violations::new();
                profile.validate(&mut pv, "");
                for fv in pv.into_vec() {
                    r.err(&format!("spec.profile.{}", fv.field), fv.description);
                }
                let parent_raw = r.string(&doc, "spec.parent");
                let parent = if parent_raw.is_empty() {
                    None
                } else {
                    r.entity_ref("spec.parent", &parent_raw, "group")
                };
                let mut members = BTreeSet::new();
                for (i, m) in r.strings(&doc, "spec.members").into_iter().enumerate() {
                    let user = m.strip_prefix("user:").unwrap_or(&m);
                    let user = user.strip_prefix("default/").unwrap_or(user).to_owned();
                    let mut mv = Violations::new();
                    mv.member("member", &user);
                    if !mv.is_empty() {
                        r.err(
                            &format!("spec.members[{i}]"),
                            "must be a user reference without whitespace",
                        );
                    }
                    members.insert(user);
                }
                if let Some(name) = name {
                    docs.groups.push(GroupDoc {
                        index,
                        name,
                        profile,
                        parent,
                        members,
                    });
                }
            }
            "System" => {
                let owner_raw = r.string(&doc, "spec.owner");
                let owner = r.entity_ref("spec.owner", &owner_raw, "group");
                let display_name = r.string(&doc, "metadata.title");
                let description = r.string(&doc, "metadata.description");
                if display_name.chars().count() > validate::MAX_DISPLAY_NAME {
                    r.err("metadata.title", "too long");
                }
                if description.chars().count() > validate::MAX_DESCRIPTION {
                    r.err("metadata.description", "too long");
                }
                if let (Some(name), Some(owner)) = (name, owner) {
                    docs.systems.push(SystemDoc {
                        index,
                        name,
                        owner,
                        display_name,
                        description,
                    });
                }
            }
            "Component" => {
                let component = component(&mut r, &doc, annotations);
                if let (Some(name), Some((owner, spec, deprecation, depends_on))) =
                    (name, component)
                {
                    docs.components.push(ComponentDoc {
                        index,
                        name,
                        owner,
                        spec,
                        deprecation,
                        depends_on,
                    });
                }
            }
            other => unreachable!("{other} is a typed kind"),
        }
        // The descriptor as it came, kept beside what it became: needed
        // only when Paved's own export of it would say something else, or
        // to bring one stored before up to date.
        if docs.groups.len() + docs.systems.len() + docs.components.len() > typed_before
            && let Ok(document) = serde_json::to_value(&doc)
            && let Ok(er) = check_document(&document)
        {
            let plain = kind == "Component"
                && docs
                    .components
                    .last()
                    .is_some_and(|c| component_doc(&c.as_service()) == document);
            docs.companions.push(EntityDoc {
                index,
                label: r.label.clone(),
                id: er.id(),
                document,
                optional: plain,
            });
        }
    }
    if v.is_empty() {
        Ok(docs)
    } else {
        Err(error::invalid(v.into_vec()))
    }
}

type ComponentParts = (Name, ServiceSpec, Option<String>, BTreeSet<Name>);

/// The repository URL Backstage's own annotations imply: the
/// `backstage.io/source-location` (`url:` form), else the GitHub slug.
fn repository_from<V: AsRef<str>>(annotations: &BTreeMap<String, V>) -> Option<String> {
    annotations
        .get("backstage.io/source-location")
        .and_then(|s| s.as_ref().strip_prefix("url:"))
        .map(|s| s.trim_end_matches('/').to_owned())
        .or_else(|| {
            annotations
                .get("github.com/project-slug")
                .map(|slug| format!("https://github.com/{}", slug.as_ref()))
        })
}

fn component(
    r: &mut DocReader<'_>,
    doc: &Value,
    mut annotations: BTreeMap<String, String>,
) -> Option<ComponentParts> {
    let kind_raw = r.string(doc, "spec.type");
    let kind = ServiceType::parse(&kind_raw);
    if kind.is_none() {
        // Any string, as in Backstage; the well-known ones are suggested.
        r.err(
            "spec.type",
            "is required (e.g. service, website, library, worker)",
        );
    }
    let lifecycle_raw = r.string(doc, "spec.lifecycle");
    let lifecycle = Lifecycle::parse(&lifecycle_raw);
    if lifecycle.is_none() {
        r.err(
            "spec.lifecycle",
            "is required (e.g. experimental, production, deprecated)",
        );
    }
    let owner_raw = r.string(doc, "spec.owner");
    let owner = r.entity_ref("spec.owner", &owner_raw, "group");
    let system_raw = r.string(doc, "spec.system");
    let system = if system_raw.is_empty() {
        None
    } else {
        r.entity_ref("spec.system", &system_raw, "system")
    };
    let mut depends_on = BTreeSet::new();
    for (i, dep) in r.strings(doc, "spec.dependsOn").into_iter().enumerate() {
        let is_component = dep
            .split_once(':')
            .is_none_or(|(k, _)| k.eq_ignore_ascii_case("component"));
        if is_component
            && let Some(n) = r.entity_ref(&format!("spec.dependsOn[{i}]"), &dep, "component")
        {
            depends_on.insert(n);
        }
    }
    let mut links = Vec::new();
    if let Some(items) = r.get(doc, "metadata.links").and_then(Value::as_sequence) {
        for item in items {
            links.push(Link {
                url: item
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                title: item
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
    }
    let tier = match annotations.get(ANNOTATION_TIER) {
        None => None,
        Some(t) => match t.parse::<u8>() {
            Ok(t) => Some(t),
            Err(_) => {
                r.err(
                    &format!("metadata.annotations[{ANNOTATION_TIER}]"),
                    "must be 1..=5",
                );
                None
            }
        },
    };
    let repository_url = annotations
        .get(ANNOTATION_REPOSITORY)
        .cloned()
        .or_else(|| repository_from(&annotations))
        .unwrap_or_default();
    let docs_url = annotations
        .get(ANNOTATION_DOCS)
        .cloned()
        .or_else(|| {
            links
                .iter()
                .find(|l| l.title.to_ascii_lowercase().contains("doc"))
                .map(|l| l.url.clone())
        })
        .unwrap_or_default();
    let deprecation = annotations.get(ANNOTATION_DEPRECATION).cloned();
    annotations.retain(|k, _| !k.starts_with(PAVED_PREFIX));
    let spec = ServiceSpec {
        kind: kind?,
        lifecycle: lifecycle?,
        system,
        description: r.string(doc, "metadata.description"),
        tier,
        repository_url,
        docs_url,
        tags: r.strings(doc, "metadata.tags"),
        labels: r.map(doc, "metadata.labels"),
        annotations,
        links,
    };
    let mut sv = Violations::new();
    spec.validate(&mut sv, "");
    for fv in sv.into_vec() {
        let path = match fv.field.split_once(['.', '[']) {
            Some((head, _)) => head.to_owned(),
            None => fv.field.clone(),
        };
        let doc_path = match path.as_str() {
            "description" | "tags" | "labels" | "annotations" | "links" => {
                format!("metadata.{}", fv.field)
            }
            "tier" => format!("metadata.annotations[{ANNOTATION_TIER}]"),
            "docs_url" => format!("metadata.annotations[{ANNOTATION_DOCS}]"),
            "repository_url" => format!("metadata.annotations[{ANNOTATION_REPOSITORY}]"),
            _ => format!("spec.{}", fv.field),
        };
        r.err(&doc_path, fv.description);
    }
    Some((owner?, spec, deprecation, depends_on))
}

/// One command of the plan.
enum Step {
    Team(Name, TeamCommand),
    System(Name, SystemCommand),
    Service(Name, ServiceCommand),
    Entity(Name, EntityCommand),
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Team(n, c) => format!("team/{n}/{}", team_step(c)),
            Step::System(n, c) => format!(
                "system/{n}/{}",
                match c {
                    SystemCommand::Create { .. } => "create",
                    SystemCommand::Update { .. } => "update",
                    SystemCommand::TransferOwnership { .. } => "owner",
                    SystemCommand::Retire { .. } => "retire",
                }
            ),
            Step::Service(n, c) => format!(
                "service/{n}/{}",
                match c {
                    ServiceCommand::Register { .. } => "register".to_owned(),
                    ServiceCommand::Update { .. } => "update".to_owned(),
                    ServiceCommand::TransferOwnership { .. } => "owner".to_owned(),
                    ServiceCommand::Deprecate { .. } => "deprecate".to_owned(),
                    ServiceCommand::AddDependency { on, .. } => format!("dep+{on}"),
                    ServiceCommand::RemoveDependency { on } => format!("dep-{on}"),
                    other => format!("{other:?}").chars().take(16).collect(),
                }
            ),
            Step::Entity(n, c) => format!(
                "entity/{n}/{}",
                match c {
                    EntityCommand::Store { .. } => "store",
                    EntityCommand::Remove => "remove",
                }
            ),
        }
    }
}

fn team_step(c: &TeamCommand) -> String {
    match c {
        TeamCommand::Create { .. } => "create".to_owned(),
        TeamCommand::UpdateProfile { .. } => "profile".to_owned(),
        TeamCommand::AddMember { member } => format!("member+{member}"),
        TeamCommand::RemoveMember { member } => format!("member-{member}"),
        TeamCommand::SetParent { .. } => "parent".to_owned(),
        TeamCommand::Retire { .. } => "retire".to_owned(),
    }
}

fn exec_err(e: ExecuteError) -> Status {
    error::execute(e)
}

/// Current states of many aggregates, fetched concurrently.
async fn states<A: Aggregate>(
    executor: &Executor,
    names: Vec<Name>,
) -> Result<HashMap<Name, A>, Status> {
    futures::stream::iter(names)
        .map(|n| async move {
            let loaded = executor.state::<A>(&n).await.map_err(exec_err)?;
            Ok::<_, Status>((n, loaded.state))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Imports a multi-document Backstage YAML file. The request id is bound to
/// the file by a receipt (aggregate `import`) recorded after the commands of
/// an import that changed something: a retry with the same file answers the
/// original result, another file under the same id is refused on
/// `request_id`. A crash before the receipt leaves the commands done so far;
/// the retry does the rest and records the receipt.
pub async fn import(
    executor: &Executor,
    meta: &CommandMeta,
    yaml: &str,
    dry_run: bool,
) -> Result<pb::ImportBackstageResponse, Status> {
    use sha2::{Digest, Sha256};
    let fingerprint = Sha256::new()
        .chain_update(meta.principal.name.as_bytes())
        .chain_update(b"\n")
        .chain_update(yaml.as_bytes())
        .finalize()
        .to_vec();
    let receipt = receipt_id(&hex::encode(Sha256::digest(meta.command_id.as_bytes())))
        .map_err(error::rejection)?;
    if !dry_run
        && let Some(answer) = receipted(executor, &receipt, &fingerprint, &meta.command_id).await?
    {
        return Ok(answer);
    }
    let response = run_import(executor, meta, yaml, dry_run).await?;
    // Like any command that changes nothing, an import that changed nothing
    // appends nothing (no receipt either).
    if dry_run || response.commands == 0 {
        return Ok(response);
    }
    let record = ImportCommand::Record(ImportReceipt {
        fingerprint: fingerprint.clone(),
        result: ImportResult {
            sequence: response.sequence,
            commands: response.commands,
            events: response.events,
            entities: response.entities,
            unchanged: response.unchanged,
        },
    });
    match executor
        .execute::<Option<ImportReceipt>>(&receipt, &record, meta)
        .await
    {
        Ok(_) => Ok(response),
        // The same import, retried concurrently, recorded its receipt first.
        Err(ExecuteError::RequestIdReused(_)) => {
            receipted(executor, &receipt, &fingerprint, &meta.command_id)
                .await?
                .ok_or_else(|| {
                    error::execute(ExecuteError::RequestIdReused(meta.command_id.clone()))
                })
        }
        Err(e) => Err(exec_err(e)),
    }
}

/// The original answer of an import whose receipt exists: `None` when there
/// is none, `INVALID_ARGUMENT` on `request_id` when it was for another file.
async fn receipted(
    executor: &Executor,
    receipt: &Name,
    fingerprint: &[u8],
    request_id: &str,
) -> Result<Option<pb::ImportBackstageResponse>, Status> {
    let loaded = executor
        .state::<Option<ImportReceipt>>(receipt)
        .await
        .map_err(exec_err)?;
    match loaded.state {
        None => Ok(None),
        Some(r) if r.fingerprint == fingerprint => Ok(Some(pb::ImportBackstageResponse {
            sequence: r.result.sequence,
            commands: r.result.commands,
            events: r.result.events,
            entities: r.result.entities,
            unchanged: r.result.unchanged,
        })),
        Some(_) => Err(error::execute(ExecuteError::RequestIdReused(
            request_id.to_owned(),
        ))),
    }
}

async fn run_import(
    executor: &Executor,
    meta: &CommandMeta,
    yaml: &str,
    dry_run: bool,
) -> Result<pb::ImportBackstageResponse, Status> {
    let mut docs = parse_off_runtime(Arc::from(yaml)).await?;
    // Users' memberOf and groups' members: one membership.
    let joining = memberships(&mut docs);
    let entities =
        (docs.groups.len() + docs.systems.len() + docs.components.len() + docs.entities.len())
            as u32;
    let mut wanted = referenced_teams(&docs);
    wanted.extend(joining.iter().map(|(team, _)| team.clone()));
    wanted.sort();
    wanted.dedup();
    let teams: HashMap<Name, Option<Team>> = states(executor, wanted).await?;
    let systems: HashMap<Name, Option<System>> =
        states(executor, referenced_systems(&docs)).await?;
    let services: HashMap<Name, Option<Service>> =
        states(executor, referenced_services(&docs)).await?;
    // Repositories held by other services and entities the domain refuses:
    // found now, not half-way through.
    let mut conflicts = repository_conflicts(executor, &docs, &services, meta).await?;
    let (entity_steps, entities_unchanged) =
        plan_entities(executor, &docs, meta, &mut conflicts).await?;
    if !conflicts.is_empty() {
        return Err(error::invalid(conflicts));
    }
    let (mut phases, mut unchanged) = plan(&docs, &teams, &systems, &services, &meta.principal)?;
    // Users of the file joining teams the file does not describe.
    let joins: Vec<Step> = joining
        .into_iter()
        .filter(|(team, user)| {
            teams
                .get(team)
                .and_then(Option::as_ref)
                .is_some_and(|t| !t.members.contains(user))
        })
        .map(|(team, member)| Step::Team(team, TeamCommand::AddMember { member }))
        .collect();
    phases.extend(serialize_per_aggregate(joins));
    unchanged += entities_unchanged;
    // What the domain would refuse half-way through: found now.
    let claims: Vec<Name> = docs
        .components
        .iter()
        .filter_map(|c| {
            let current = services.get(&c.name).and_then(Option::as_ref);
            let command = ServiceCommand::Register {
                owner: c.owner.clone(),
                spec: c.spec.clone(),
            };
            repository_to_claim(current, &command).map(|l| claim_id(&l.identity))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut copy = CatalogCopy::new(executor);
    copy.seed(teams);
    copy.seed(systems);
    copy.seed(services);
    copy.seed(states::<Option<RepositoryClaim>>(executor, claims).await?);
    let refused = rehearse(copy, &docs, &phases, meta).await?;
    if !refused.is_empty() {
        return Err(error::invalid(refused));
    }
    if !entity_steps.is_empty() {
        phases.push(entity_steps);
    }
    let mut response = pb::ImportBackstageResponse {
        sequence: 0,
        commands: phases.iter().map(|p| p.len() as u32).sum(),
        events: 0,
        entities,
        unchanged,
    };
    if dry_run {
        return Ok(response);
    }
    for phase in phases {
        let results: Vec<Executed> = futures::stream::iter(phase)
            .map(|step| async move {
                let mut m = meta.clone();
                m.command_id = format!("{}/{}", meta.command_id, step.label());
                m.causation_id = meta.command_id.clone();
                let done = match &step {
                    Step::Team(n, c) => executor.execute::<Option<Team>>(n, c, &m).await,
                    Step::System(n, c) => executor.execute::<Option<System>>(n, c, &m).await,
                    Step::Entity(n, c) => executor.execute::<Option<Entity>>(n, c, &m).await,
                    Step::Service(n, c) => {
                        match super::claim_repository(executor, n, c, &m).await {
                            Ok(()) => executor.execute::<Option<Service>>(n, c, &m).await,
                            Err(e) => Err(e),
                        }
                    }
                };
                done.map_err(|e| {
                    let status = exec_err(e);
                    Status::new(
                        status.code(),
                        format!("{}: {}", step.label(), status.message()),
                    )
                })
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        for r in results {
            response.sequence = response.sequence.max(r.sequence);
            response.events += r.events;
        }
    }
    Ok(response)
}

/// The memberships the file's User documents declare (`spec.memberOf`,
/// users and groups of the default namespace): added to the members of
/// the file's own groups, and returned for the teams the file does not
/// describe. Backstage reads a membership from either side; so does Paved.
fn memberships(docs: &mut Documents) -> Vec<(Name, String)> {
    let mut elsewhere = Vec::new();
    for user in docs
        .entities
        .iter()
        .filter(|e| e.document["kind"].as_str() == Some("User"))
    {
        let namespace = user.document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let Some(name) = user.document["metadata"]["name"].as_str() else {
            continue;
        };
        if namespace != "default" {
            continue;
        }
        let mut v = Violations::new();
        for r in relations(&user.document, namespace, &mut v) {
            let Some(team) = (r.kind == "memberOf").then(|| r.target.team()).flatten() else {
                continue;
            };
            match docs.groups.iter_mut().find(|g| g.name == team) {
                Some(g) => {
                    g.members.insert(name.to_owned());
                }
                None => elsewhere.push((team, name.to_owned())),
            }
        }
    }
    elsewhere
}

/// Runs the import's steps, phase by phase, over an in-memory copy of the
/// catalog ([`dry_run::CatalogCopy`]): the domain's refusals, each on the
/// document of the entity it is about.
async fn rehearse(
    mut copy: CatalogCopy<'_>,
    docs: &Documents,
    phases: &[Vec<Step>],
    meta: &CommandMeta,
) -> Result<Vec<FieldViolation>, Status> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for g in &docs.groups {
        index.insert(format!("team/{}", g.name), g.index);
    }
    for y in &docs.systems {
        index.insert(format!("system/{}", y.name), y.index);
    }
    for c in &docs.components {
        index.insert(format!("service/{}", c.name), c.index);
    }
    let mut refused = Vec::new();
    for step in phases.iter().flatten() {
        let outcome = match step {
            Step::Team(n, c) => copy.run::<Option<Team>>(n, c, meta).await?,
            Step::System(n, c) => copy.run::<Option<System>>(n, c, meta).await?,
            Step::Service(n, c) => {
                let current: Option<Service> = copy.state(n).await?;
                match super::claim_command(current.as_ref(), n, c) {
                    Some((claim, command)) => {
                        match copy
                            .run::<Option<RepositoryClaim>>(&claim, &command, meta)
                            .await?
                        {
                            Ok(()) => copy.run::<Option<Service>>(n, c, meta).await?,
                            Err(r) => Err(r),
                        }
                    }
                    None => copy.run::<Option<Service>>(n, c, meta).await?,
                }
            }
            // Checked on their own (`plan_entities`): nothing refers to them.
            Step::Entity(..) => Ok(()),
        };
        if let Err(r) = outcome {
            let label = step.label();
            let target = label.rsplit_once('/').map_or(label.as_str(), |(t, _)| t);
            let field = index
                .get(target)
                .map_or_else(|| "documents".to_owned(), |i| format!("documents[{i}]"));
            refused.push(FieldViolation::new(field, format!("{label}: {r}")));
        }
    }
    Ok(refused)
}

/// The entities of other kinds to store: the domain's own `decide` run on
/// each against the catalog as it is now, so what it refuses is found
/// before anything is appended (pushed to `problems` by document).
async fn plan_entities(
    executor: &Executor,
    docs: &Documents,
    meta: &CommandMeta,
    problems: &mut Vec<FieldViolation>,
) -> Result<(Vec<Step>, u32), Status> {
    // By position in `docs.entities`: what it would store.
    type Item = (usize, Name, EntityCommand);
    let all: Vec<&EntityDoc> = docs.entities.iter().chain(&docs.companions).collect();
    let items: Vec<(usize, Name, EntityCommand, bool)> = all
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let command = EntityCommand::Store {
                document: d.document.clone(),
            };
            (i, d.id.clone(), command, d.optional)
        })
        .collect();
    let decided: Vec<(Item, Result<bool, Rejection>)> = futures::stream::iter(items)
        .map(|(i, id, command, optional)| async move {
            let state = executor
                .state::<Option<Entity>>(&id)
                .await
                .map_err(exec_err)?
                .state;
            if optional && state.is_none() {
                return Ok::<_, Status>(((i, id, command), Ok(false)));
            }
            let mut refs = References::default();
            for r in state.references(&command, &refs) {
                let team = executor
                    .state::<Option<Team>>(&r.id)
                    .await
                    .map_err(exec_err)?
                    .state;
                refs.insert_team(r.id, team);
            }
            let ctx = Context {
                id: &id,
                principal: &meta.principal,
                now: meta.now,
                refs: &refs,
            };
            let changes = state.decide(&command, &ctx).map(|e| !e.is_empty());
            Ok::<_, Status>(((i, id, command), changes))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let (mut steps, mut unchanged) = (Vec::new(), 0);
    for ((i, id, command), changes) in decided {
        let (index, label) = (all[i].index, &all[i].label);
        match changes {
            Ok(true) => steps.push(Step::Entity(id, command)),
            // A descriptor beside a typed entity counts with that entity.
            Ok(false) if i < docs.entities.len() => unchanged += 1,
            Ok(false) => {}
            Err(Rejection::Invalid(violations)) => {
                problems.extend(violations.into_iter().map(|fv| {
                    FieldViolation::new(
                        format!("documents[{index}].{}", fv.field),
                        format!("{label}: {}", fv.description),
                    )
                }))
            }
            Err(other) => problems.push(FieldViolation::new(
                format!("documents[{index}]"),
                format!("{label}: {other}"),
            )),
        }
    }
    Ok((steps, unchanged))
}

/// Components naming a repository path whose claim another team's service
/// holds (the claim aggregate's own `decide`, run on the states as they
/// are now), or that another team's component of the file names too.
async fn repository_conflicts(
    executor: &Executor,
    docs: &Documents,
    services: &HashMap<Name, Option<Service>>,
    meta: &CommandMeta,
) -> Result<Vec<FieldViolation>, Status> {
    let mut out = Vec::new();
    let mut in_file: BTreeMap<SourceLocation, (Name, Name)> = BTreeMap::new();
    for c in &docs.components {
        let command = ServiceCommand::Register {
            owner: c.owner.clone(),
            spec: c.spec.clone(),
        };
        let current = services.get(&c.name).and_then(Option::as_ref);
        let wanted = match current {
            // What an update of it would claim.
            Some(cur) => repository_to_claim(
                Some(cur),
                &ServiceCommand::Update {
                    spec: c.spec.clone(),
                    fields: SpecField::ALL.to_vec(),
                },
            ),
            None => repository_to_claim(None, &command),
        };
        let Some(location) = wanted else { continue };
        let owner = current.map_or(&c.owner, |cur| &cur.owner).clone();
        // Two teams' components of this file naming one path.
        match in_file.get(&location) {
            Some((team, other)) if team != &owner => {
                out.push(FieldViolation::new(
                    format!("components.{}.metadata.annotations", c.name),
                    format!(
                        "{location} is named by component {other} of team {team} in this file too: \
                         a repository path belongs to one team"
                    ),
                ));
                continue;
            }
            Some(_) => {}
            None => {
                in_file.insert(location.clone(), (owner.clone(), c.name.clone()));
            }
        }
        let id = claim_id(&location.identity);
        let claim = executor
            .state::<Option<RepositoryClaim>>(&id)
            .await
            .map_err(exec_err)?
            .state;
        let claim_command = RepositoryCommand::Claim {
            identity: location.identity,
            path: location.path,
            service: c.name.clone(),
            owner,
        };
        // The services holding that path now, as the claim's decision needs them.
        let mut refs = References::default();
        for holder in claim.references(&claim_command, &refs) {
            let state = executor
                .state::<Option<Service>>(&holder.id)
                .await
                .map_err(exec_err)?
                .state;
            refs.insert_service(holder.id, state);
        }
        let ctx = Context {
            id: &id,
            principal: &meta.principal,
            now: meta.now,
            refs: &refs,
        };
        if let Err(Rejection::AlreadyExists(what)) = claim.decide(&claim_command, &ctx) {
            out.push(FieldViolation::new(
                format!("components.{}.metadata.annotations", c.name),
                format!("{what} already exists: a repository path belongs to one team"),
            ));
        }
    }
    Ok(out)
}

fn referenced_teams(docs: &Documents) -> Vec<Name> {
    let mut names = BTreeSet::new();
    for g in &docs.groups {
        names.insert(g.name.clone());
        names.extend(g.parent.clone());
    }
    names.extend(docs.systems.iter().map(|s| s.owner.clone()));
    names.extend(docs.components.iter().map(|c| c.owner.clone()));
    names.into_iter().collect()
}

fn referenced_systems(docs: &Documents) -> Vec<Name> {
    let mut names: BTreeSet<Name> = docs.systems.iter().map(|s| s.name.clone()).collect();
    names.extend(docs.components.iter().filter_map(|c| c.spec.system.clone()));
    names.into_iter().collect()
}

fn referenced_services(docs: &Documents) -> Vec<Name> {
    let mut names: BTreeSet<Name> = docs.components.iter().map(|c| c.name.clone()).collect();
    for c in &docs.components {
        names.extend(c.depends_on.iter().cloned());
    }
    names.into_iter().collect()
}

/// Works out the commands, phase by phase, and checks up front what would
/// otherwise fail half-way: references to missing or retired entities,
/// retired entities in the file, and permissions.
fn plan(
    docs: &Documents,
    teams: &HashMap<Name, Option<Team>>,
    systems: &HashMap<Name, Option<System>>,
    services: &HashMap<Name, Option<Service>>,
    principal: &Principal,
) -> Result<(Vec<Vec<Step>>, u32), Status> {
    let mut v = Violations::new();
    let in_file_groups: BTreeSet<&Name> = docs.groups.iter().map(|g| &g.name).collect();
    let in_file_systems: BTreeSet<&Name> = docs.systems.iter().map(|s| &s.name).collect();
    let in_file_components: BTreeSet<&Name> = docs.components.iter().map(|c| &c.name).collect();
    let live_team = |n: &Name| {
        in_file_groups.contains(n)
            || teams
                .get(n)
                .is_some_and(|t| t.as_ref().is_some_and(|t| t.retired.is_none()))
    };
    let live_system = |n: &Name| {
        in_file_systems.contains(n)
            || systems
                .get(n)
                .is_some_and(|s| s.as_ref().is_some_and(|s| s.retired.is_none()))
    };
    let live_service = |n: &Name| {
        in_file_components.contains(n)
            || services
                .get(n)
                .is_some_and(|s| s.as_ref().is_some_and(|s| s.retired.is_none()))
    };
    let mut unchanged = 0u32;

    // Groups, parents before children.
    let mut depth: HashMap<&Name, usize> = HashMap::new();
    let by_name: HashMap<&Name, &GroupDoc> = docs.groups.iter().map(|g| (&g.name, g)).collect();
    for g in &docs.groups {
        let mut d = 0;
        let mut cur = g.parent.as_ref();
        while let Some(p) = cur.filter(|p| by_name.contains_key(p)) {
            d += 1;
            if d > docs.groups.len() {
                v.push(
                    format!("groups.{}.spec.parent", g.name),
                    "the file's group parents form a cycle",
                );
                break;
            }
            cur = by_name[p].parent.as_ref();
        }
        depth.insert(&g.name, d);
    }
    let max_depth = depth.values().copied().max().unwrap_or(0);
    let mut phases: Vec<Vec<Step>> = (0..=max_depth).map(|_| Vec::new()).collect();
    for g in &docs.groups {
        if let Some(p) = &g.parent
            && !live_team(p)
        {
            v.push(
                format!("groups.{}.spec.parent", g.name),
                format!("team {p:?} does not exist or is retired"),
            );
        }
        let steps = &mut phases[depth[&g.name]];
        let before = steps.len();
        match teams.get(&g.name).and_then(Option::as_ref) {
            None => {
                if !principal.is_admin() {
                    v.push(format!("groups.{}", g.name), "only admins create teams");
                }
                steps.push(Step::Team(
                    g.name.clone(),
                    TeamCommand::Create {
                        profile: g.profile.clone(),
                        parent: g.parent.clone(),
                        members: g.members.iter().cloned().collect(),
                    },
                ));
            }
            Some(t) if t.retired.is_some() => {
                v.push(format!("groups.{}", g.name), "this team is retired");
            }
            Some(t) => {
                if t.profile != g.profile {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::UpdateProfile {
                            profile: g.profile.clone(),
                        },
                    ));
                }
                if t.parent != g.parent {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::SetParent {
                            parent: g.parent.clone(),
                        },
                    ));
                }
                for m in g.members.difference(&t.members) {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::AddMember { member: m.clone() },
                    ));
                }
                for m in t.members.difference(&g.members) {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::RemoveMember { member: m.clone() },
                    ));
                }
                let needs_admin = t.parent != g.parent;
                if steps.len() > before
                    && (!principal.acts_for(&g.name) || (needs_admin && !principal.is_admin()))
                {
                    v.push(
                        format!("groups.{}", g.name),
                        format!("{} may not change this team", principal.name),
                    );
                }
            }
        }
        if steps.len() == before {
            unchanged += 1;
        }
    }

    // Systems.
    let mut system_steps = Vec::new();
    for s in &docs.systems {
        if !live_team(&s.owner) {
            v.push(
                format!("systems.{}.spec.owner", s.name),
                format!("team {:?} does not exist or is retired", s.owner.as_str()),
            );
        }
        if !principal.acts_for(&s.owner) {
            v.push(
                format!("systems.{}", s.name),
                format!(
                    "{} may not change systems of team {:?}",
                    principal.name,
                    s.owner.as_str()
                ),
            );
        }
        let before = system_steps.len();
        match systems.get(&s.name).and_then(Option::as_ref) {
            None => system_steps.push(Step::System(
                s.name.clone(),
                SystemCommand::Create {
                    owner: s.owner.clone(),
                    display_name: s.display_name.clone(),
                    description: s.description.clone(),
                },
            )),
            Some(cur) if cur.retired.is_some() => {
                v.push(format!("systems.{}", s.name), "this system is retired");
            }
            Some(cur) => {
                if !principal.acts_for(&cur.owner) {
                    v.push(
                        format!("systems.{}", s.name),
                        format!("{} may not change this system", principal.name),
                    );
                }
                if cur.display_name != s.display_name || cur.description != s.description {
                    system_steps.push(Step::System(
                        s.name.clone(),
                        SystemCommand::Update {
                            display_name: s.display_name.clone(),
                            description: s.description.clone(),
                        },
                    ));
                }
                if cur.owner != s.owner {
                    system_steps.push(Step::System(
                        s.name.clone(),
                        SystemCommand::TransferOwnership {
                            to: s.owner.clone(),
                        },
                    ));
                }
            }
        }
        if system_steps.len() == before {
            unchanged += 1;
        }
    }
    phases.push(system_steps);

    // Components, then their dependencies.
    let mut component_steps = Vec::new();
    let mut dependency_steps = Vec::new();
    for c in &docs.components {
        if !live_team(&c.owner) {
            v.push(
                format!("components.{}.spec.owner", c.name),
                format!("team {:?} does not exist or is retired", c.owner.as_str()),
            );
        }
        if let Some(s) = &c.spec.system
            && !live_system(s)
        {
            v.push(
                format!("components.{}.spec.system", c.name),
                format!("system {:?} does not exist or is retired", s.as_str()),
            );
        }
        // Joining a system: the domain's one rule, checked up front.
        if let Some(s) = &c.spec.system {
            let joins = services
                .get(&c.name)
                .and_then(Option::as_ref)
                .is_none_or(|cur| cur.spec.system.as_ref() != Some(s));
            let owner = docs
                .systems
                .iter()
                .find(|d| &d.name == s)
                .map(|d| d.owner.clone())
                .or_else(|| {
                    systems
                        .get(s)
                        .and_then(Option::as_ref)
                        .map(|x| x.owner.clone())
                });
            if joins
                && let Some(owner) = owner
                && let Err(Rejection::PermissionDenied(why)) = may_join_system(principal, s, &owner)
            {
                v.push(format!("components.{}.spec.system", c.name), why);
            }
        }
        for d in &c.depends_on {
            if d == &c.name {
                v.push(
                    format!("components.{}.spec.dependsOn", c.name),
                    "a service cannot depend on itself",
                );
            } else if !live_service(d) {
                v.push(
                    format!("components.{}.spec.dependsOn", c.name),
                    format!("component {:?} does not exist or is retired", d.as_str()),
                );
            }
        }
        if !principal.acts_for(&c.owner) {
            v.push(
                format!("components.{}", c.name),
                format!(
                    "{} may not change services of team {:?}",
                    principal.name,
                    c.owner.as_str()
                ),
            );
        }
        let before = component_steps.len() + dependency_steps.len();
        let current = services.get(&c.name).and_then(Option::as_ref);
        let (current_deps, current_deprecation) = match current {
            None => {
                component_steps.push(Step::Service(
                    c.name.clone(),
                    ServiceCommand::Register {
                        owner: c.owner.clone(),
                        spec: c.spec.clone(),
                    },
                ));
                (BTreeSet::new(), None)
            }
            Some(cur) if cur.retired.is_some() => {
                v.push(format!("components.{}", c.name), "this service is retired");
                continue;
            }
            Some(cur) => {
                if !principal.acts_for(&cur.owner) {
                    v.push(
                        format!("components.{}", c.name),
                        format!("{} may not change this service", principal.name),
                    );
                }
                let fields: Vec<SpecField> = SpecField::ALL
                    .into_iter()
                    .filter(|f| f.differs(&cur.spec, &c.spec))
                    .collect();
                if !fields.is_empty() {
                    component_steps.push(Step::Service(
                        c.name.clone(),
                        ServiceCommand::Update {
                            spec: c.spec.clone(),
                            fields,
                        },
                    ));
                }
                if cur.owner != c.owner {
                    component_steps.push(Step::Service(
                        c.name.clone(),
                        ServiceCommand::TransferOwnership {
                            to: c.owner.clone(),
                        },
                    ));
                }
                (
                    cur.dependencies.keys().cloned().collect(),
                    cur.deprecation.clone(),
                )
            }
        };
        if let Some(reason) = &c.deprecation
            && current_deprecation.as_ref() != Some(reason)
        {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::Deprecate {
                    reason: reason.clone(),
                },
            ));
        }
        for d in c.depends_on.difference(&current_deps) {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::AddDependency {
                    on: d.clone(),
                    criticality: None,
                },
            ));
        }
        for d in current_deps.difference(&c.depends_on) {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::RemoveDependency { on: d.clone() },
            ));
        }
        if component_steps.len() + dependency_steps.len() == before {
            unchanged += 1;
        }
    }
    phases.push(component_steps);
    // Dependency and deprecation steps of one service must not race each other.
    phases.extend(serialize_per_aggregate(dependency_steps));
    if !v.is_empty() {
        return Err(error::invalid(v.into_vec()));
    }
    phases.retain(|p| !p.is_empty());
    Ok((phases, unchanged))
}

/// Splits steps into phases so that no phase holds two steps for the same
/// aggregate (they would only conflict and retry).
fn serialize_per_aggregate(steps: Vec<Step>) -> Vec<Vec<Step>> {
    let mut phases: Vec<Vec<Step>> = Vec::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for step in steps {
        let key = match &step {
            Step::Team(n, _) => format!("t/{n}"),
            Step::System(n, _) => format!("y/{n}"),
            Step::Service(n, _) => format!("s/{n}"),
            Step::Entity(n, _) => format!("e/{n}"),
        };
        let i = count.entry(key).or_insert(0);
        if phases.len() <= *i {
            phases.push(Vec::new());
        }
        phases[*i].push(step);
        *i += 1;
    }
    phases
}

/// The catalog as Backstage descriptor YAML.
pub async fn export(
    pool: &PgPool,
    include_retired: bool,
) -> Result<pb::ExportBackstageResponse, Status> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    for t in super::queries::list_all_teams(pool, include_retired).await? {
        let profile_pb = t.profile.unwrap_or_default();
        let mut annotations = serde_json::Map::new();
        if !profile_pb.chat_channel.is_empty() {
            annotations.insert(ANNOTATION_CHAT.into(), json!(profile_pb.chat_channel));
        }
        if t.retired {
            annotations.insert("paved.dev/retired".into(), json!(t.retired_reason));
        }
        let mut profile = serde_json::Map::new();
        if !profile_pb.display_name.is_empty() {
            profile.insert("displayName".into(), json!(profile_pb.display_name));
        }
        if !profile_pb.email.is_empty() {
            profile.insert("email".into(), json!(profile_pb.email));
        }
        let mut spec = serde_json::Map::new();
        spec.insert("type".into(), json!("team"));
        spec.insert("profile".into(), serde_json::Value::Object(profile));
        if !t.parent.is_empty() {
            spec.insert("parent".into(), json!(t.parent));
        }
        spec.insert("children".into(), json!(t.children));
        spec.insert("members".into(), json!(t.members));
        docs.push(entity(
            "Group",
            &t.name,
            annotations,
            serde_json::Map::new(),
            spec,
        ));
    }
    for y in super::queries::list_all_systems(pool, include_retired).await? {
        let mut annotations = serde_json::Map::new();
        if y.retired {
            annotations.insert("paved.dev/retired".into(), json!(y.retired_reason));
        }
        let mut meta = serde_json::Map::new();
        if !y.display_name.is_empty() {
            meta.insert("title".into(), json!(y.display_name));
        }
        if !y.description.is_empty() {
            meta.insert("description".into(), json!(y.description));
        }
        let mut spec = serde_json::Map::new();
        spec.insert("owner".into(), json!(y.owner));
        docs.push(entity("System", &y.name, annotations, meta, spec));
    }
    let services = super::queries::list_all_services(pool, include_retired).await?;
    for s in &services {
        docs.push(component_doc(s));
    }
    // The descriptors the teams, systems and services came as: given back
    // as they came while they still mean what the catalog says.
    let companions = super::queries::typed_descriptors(pool).await?;
    let mut docs: Vec<serde_json::Value> = docs
        .into_iter()
        .map(|d| {
            let key = format!(
                "{}:default/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            )
            .to_ascii_lowercase();
            match companions.get(&key) {
                Some(c) => descriptor_or_merge(c, d),
                None => d,
            }
        })
        .collect();
    // Entities of other kinds: as they came.
    docs.extend(super::queries::list_all_entities(pool).await?);
    let entities = docs.len() as u32;
    let mut yaml = String::new();
    for d in docs {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(&d).map_err(|e| error::internal(&e))?);
        if !yaml.ends_with('\n') {
            yaml.push('\n');
        }
    }
    Ok(pb::ExportBackstageResponse { yaml, entities })
}

/// A service as Backstage's Component descriptor.
fn component_doc(s: &pb::Service) -> serde_json::Value {
    let spec_pb = s.spec.clone().unwrap_or_default();
    let mut annotations: serde_json::Map<String, serde_json::Value> = spec_pb
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if spec_pb.tier != 0 {
        annotations.insert(ANNOTATION_TIER.into(), json!(spec_pb.tier.to_string()));
    }
    if !spec_pb.docs_url.is_empty() {
        annotations.insert(ANNOTATION_DOCS.into(), json!(spec_pb.docs_url));
    }
    // Only when Backstage's own annotations do not say it already.
    if !spec_pb.repository_url.is_empty()
        && repository_from(&spec_pb.annotations).as_ref() != Some(&spec_pb.repository_url)
    {
        annotations.insert(ANNOTATION_REPOSITORY.into(), json!(spec_pb.repository_url));
    }
    if !s.deprecation_reason.is_empty() {
        annotations.insert(ANNOTATION_DEPRECATION.into(), json!(s.deprecation_reason));
    }
    if s.retired {
        annotations.insert("paved.dev/retired".into(), json!(s.retired_reason));
    }
    let mut meta = serde_json::Map::new();
    if !spec_pb.description.is_empty() {
        meta.insert("description".into(), json!(spec_pb.description));
    }
    if !spec_pb.tags.is_empty() {
        meta.insert("tags".into(), json!(spec_pb.tags));
    }
    if !spec_pb.labels.is_empty() {
        meta.insert("labels".into(), json!(spec_pb.labels));
    }
    if !spec_pb.links.is_empty() {
        let links: Vec<_> = spec_pb
            .links
            .iter()
            .map(|l| {
                if l.title.is_empty() {
                    json!({ "url": l.url })
                } else {
                    json!({ "url": l.url, "title": l.title })
                }
            })
            .collect();
        meta.insert("links".into(), json!(links));
    }
    // The free text when the enum does not name it.
    let kind = match pb::ServiceType::try_from(spec_pb.r#type) {
        Ok(pb::ServiceType::Unspecified) | Err(_) => spec_pb.type_name.clone(),
        Ok(t) => t
            .as_str_name()
            .trim_start_matches("SERVICE_TYPE_")
            .to_lowercase(),
    };
    let lifecycle = match pb::Lifecycle::try_from(spec_pb.lifecycle) {
        Ok(pb::Lifecycle::Unspecified) | Err(_) => spec_pb.lifecycle_name.clone(),
        Ok(l) => l
            .as_str_name()
            .trim_start_matches("LIFECYCLE_")
            .to_lowercase(),
    };
    let mut spec = serde_json::Map::new();
    spec.insert("type".into(), json!(kind));
    spec.insert("lifecycle".into(), json!(lifecycle));
    spec.insert("owner".into(), json!(s.owner));
    if !spec_pb.system.is_empty() {
        spec.insert("system".into(), json!(spec_pb.system));
    }
    if !s.dependencies.is_empty() {
        let deps: Vec<String> = s
            .dependencies
            .iter()
            .map(|d| format!("component:{}", d.service))
            .collect();
        spec.insert("dependsOn".into(), json!(deps));
    }
    entity("Component", &s.name, annotations, meta, spec)
}

/// What Paved makes of one typed descriptor: two descriptors with the same
/// meaning import as the same team, system or service.
#[derive(PartialEq)]
enum Meaning {
    Group(TeamProfile, Option<Name>, BTreeSet<String>),
    System(Name, String, String),
    Component(Name, Box<ServiceSpec>, Option<String>, BTreeSet<Name>),
}

fn meaning(doc: &serde_json::Value) -> Option<Meaning> {
    let yaml = serde_yaml_ng::to_string(doc).ok()?;
    let docs = parse(&yaml, &AtomicBool::new(false)).ok()?;
    if let Some(g) = docs.groups.into_iter().next() {
        return Some(Meaning::Group(g.profile, g.parent, g.members));
    }
    if let Some(y) = docs.systems.into_iter().next() {
        return Some(Meaning::System(y.owner, y.display_name, y.description));
    }
    let c = docs.components.into_iter().next()?;
    Some(Meaning::Component(
        c.owner,
        Box::new(c.spec),
        c.deprecation,
        c.depends_on,
    ))
}

/// The descriptor `c` a typed entity was last imported from, if it still
/// means what the catalog's view of the entity (`d`) means; else `d` with
/// every field Paved does not model taken from `c` (a link's icon, a
/// component's `providesApis`, a group's `picture`, non-component
/// `dependsOn` refs, …).
fn descriptor_or_merge(c: &serde_json::Value, d: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    if meaning(c).is_some_and(|m| meaning(&d).is_some_and(|n| n == m)) {
        return c.clone();
    }
    let mut out = c.clone();
    let kind = d["kind"].as_str().unwrap_or_default().to_owned();
    let take = |out: &mut Value, section: &str, key: &str| {
        let v = d.get(section).and_then(|s| s.get(key)).cloned();
        if let Some(map) = out.get_mut(section).and_then(Value::as_object_mut) {
            match v {
                Some(v) => {
                    map.insert(key.to_owned(), v);
                }
                None => {
                    map.remove(key);
                }
            }
        }
    };
    for section in ["metadata", "spec"] {
        if !out.get(section).is_some_and(Value::is_object) {
            out[section] = Value::Object(Default::default());
        }
    }
    // Annotations: the catalog's win, the others stay.
    let mut annotations = c["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if kind == "Component" {
        // A component's annotations are all in the catalog.
        annotations.clear();
    }
    if let Some(a) = d["metadata"]["annotations"].as_object() {
        annotations.extend(a.clone());
    }
    if annotations.is_empty() {
        out["metadata"]
            .as_object_mut()
            .map(|m| m.remove("annotations"));
    } else {
        out["metadata"]["annotations"] = Value::Object(annotations);
    }
    match kind.as_str() {
        "Group" => {
            for key in ["parent", "children", "members"] {
                take(&mut out, "spec", key);
            }
            let profile = d["spec"]["profile"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut merged = c["spec"]["profile"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for key in ["displayName", "email"] {
                match profile.get(key) {
                    Some(v) => {
                        merged.insert(key.to_owned(), v.clone());
                    }
                    None => {
                        merged.remove(key);
                    }
                }
            }
            out["spec"]["profile"] = Value::Object(merged);
        }
        "System" => {
            for key in ["title", "description"] {
                take(&mut out, "metadata", key);
            }
            take(&mut out, "spec", "owner");
        }
        _ => {
            for key in ["description", "tags", "labels"] {
                take(&mut out, "metadata", key);
            }
            // A link's icon and type survive while its URL and title stay.
            let titled = |links: &Value| -> Vec<(String, String)> {
                links
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                        (text("url"), text("title"))
                    })
                    .collect()
            };
            if titled(&c["metadata"]["links"]) != titled(&d["metadata"]["links"]) {
                take(&mut out, "metadata", "links");
            }
            for key in ["type", "lifecycle", "owner", "system"] {
                take(&mut out, "spec", key);
            }
            // Paved's dependencies on components, the original's on other kinds.
            let mut deps: Vec<Value> = d["spec"]["dependsOn"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            deps.extend(
                c["spec"]["dependsOn"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| {
                        r.as_str().is_some_and(|r| {
                            r.split_once(':')
                                .is_some_and(|(k, _)| !k.eq_ignore_ascii_case("component"))
                        })
                    })
                    .cloned(),
            );
            let spec = out["spec"].as_object_mut().expect("a mapping");
            if deps.is_empty() {
                spec.remove("dependsOn");
            } else {
                spec.insert("dependsOn".into(), Value::Array(deps));
            }
        }
    }
    out
}

fn entity(
    kind: &str,
    name: &str,
    annotations: serde_json::Map<String, serde_json::Value>,
    mut metadata: serde_json::Map<String, serde_json::Value>,
    spec: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    metadata.insert("name".into(), json!(name));
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), serde_json::Value::Object(annotations));
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    })
}
