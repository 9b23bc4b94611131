//! The descriptor model: Backstage YAML read into the documents an import
//! plans from (teams, systems, services, stored entities), with the
//! violations of each document by its index and field.

use super::*;

pub const ANNOTATION_TIER: &str = "paved.dev/tier";
pub const ANNOTATION_DOCS: &str = "paved.dev/docs-url";
pub const ANNOTATION_REPOSITORY: &str = "paved.dev/repository-url";
pub const ANNOTATION_DEPRECATION: &str = "paved.dev/deprecation-reason";
pub const ANNOTATION_CHAT: &str = "paved.dev/chat-channel";
pub(super) const PAVED_PREFIX: &str = "paved.dev/";
/// Most documents one import takes (a 50,000-entity catalog, and then some).
pub const MAX_DOCUMENTS: usize = 100_000;
/// Deepest nesting of flow collections (`[…]`, `{…}`) accepted. The YAML
/// parser takes time quadratic in it (50,000 unclosed `{a: ` took 6 s), and
/// no descriptor needs more than a few levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses, in one linear pass, YAML whose flow collections nest deeper than
/// [`MAX_FLOW_DEPTH`] (brackets inside quoted scalars and comments do not count).
pub(crate) fn check_flow_depth(yaml: &str) -> Result<(), Status> {
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
pub(super) async fn parse_off_runtime(yaml: Arc<str>) -> Result<Documents, Status> {
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
pub(super) struct GroupDoc {
    pub(super) index: usize,
    pub(super) name: Name,
    pub(super) profile: TeamProfile,
    pub(super) parent: Option<Name>,
    pub(super) members: BTreeSet<String>,
    /// Groups of the file it names as its children.
    pub(super) children: Vec<Name>,
}

pub(super) struct SystemDoc {
    pub(super) index: usize,
    pub(super) name: Name,
    pub(super) owner: Name,
    pub(super) display_name: String,
    pub(super) description: String,
}

pub(super) struct ComponentDoc {
    pub(super) index: usize,
    pub(super) name: Name,
    pub(super) owner: Name,
    pub(super) spec: ServiceSpec,
    pub(super) deprecation: Option<String>,
    pub(super) depends_on: BTreeSet<Name>,
}

/// A document of a kind without an aggregate of its own, stored as it came.
pub(super) struct EntityDoc {
    pub(super) index: usize,
    pub(super) label: String,
    pub(super) id: Name,
    pub(super) document: serde_json::Value,
    /// A typed entity's descriptor that Paved's export reproduces: stored
    /// only to update one stored before.
    pub(super) optional: bool,
}

impl ComponentDoc {
    /// The service this document describes, as the read model would show it.
    pub(super) fn as_service(&self) -> pb::Service {
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
pub(super) struct Documents {
    pub(super) groups: Vec<GroupDoc>,
    pub(super) systems: Vec<SystemDoc>,
    pub(super) components: Vec<ComponentDoc>,
    pub(super) entities: Vec<EntityDoc>,
    /// The descriptors of the groups, systems and components, as they came.
    pub(super) companions: Vec<EntityDoc>,
}

/// Reads one document; violations are recorded with `documents[i].<path>`.
pub(super) struct DocReader<'a> {
    pub(super) v: &'a mut Violations,
    pub(super) index: usize,
    pub(super) label: String,
}

impl DocReader<'_> {
    pub(super) fn err(&mut self, path: &str, description: impl std::fmt::Display) {
        self.v.push(
            format!("documents[{}].{path}", self.index),
            format!("{}: {description}", self.label),
        );
    }

    pub(super) fn get<'v>(&self, doc: &'v Value, path: &str) -> Option<&'v Value> {
        path.split('.').try_fold(doc, |v, key| v.get(key))
    }

    pub(super) fn string(&mut self, doc: &Value, path: &str) -> String {
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

    pub(super) fn strings(&mut self, doc: &Value, path: &str) -> Vec<String> {
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

    pub(super) fn map(&mut self, doc: &Value, path: &str) -> BTreeMap<String, String> {
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

    pub(super) fn name(&mut self, path: &str, value: &str) -> Option<Name> {
        match Name::parse(value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(path, format!("{value:?} {e} (Paved names are DNS labels)"));
                None
            }
        }
    }

    /// `[kind:][namespace/]name` with kind `expected` (or none) and namespace `default`.
    pub(super) fn entity_ref(&mut self, path: &str, raw: &str, expected: &str) -> Option<Name> {
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

/// Can a Group, System or Component document be a team, system or service?
/// Its name is a DNS label in the default namespace, and what its typed
/// fields name is too: a group's parent, an owner that is a group, a
/// system, component dependencies. Backstage takes the others; so does
/// Paved, as stored entities (their relations shown, without the typed
/// features: DORA, provisioning, golden paths).
pub(super) fn fits_typed(kind: &str, doc: &Value) -> bool {
    let text = |path: &[&str]| -> String {
        let mut v = doc;
        for p in path {
            match v.get(*p) {
                Some(next) => v = next,
                None => return String::new(),
            }
        }
        v.as_str().unwrap_or_default().to_owned()
    };
    let namespace = text(&["metadata", "namespace"]);
    if !(namespace.is_empty() || namespace == "default")
        || Name::parse(&text(&["metadata", "name"])).is_err()
    {
        return false;
    }
    // A reference the typed model holds: `[kind:][default/]name`, of `kind`.
    let holds = |raw: &str, expected: &str| {
        paved_domain::catalog::EntityRef::parse(raw, Some(expected), "default").is_ok_and(|r| {
            r.kind.eq_ignore_ascii_case(expected)
                && r.namespace == "default"
                && Name::parse(&r.name).is_ok()
        })
    };
    let optional = |path: &[&str], expected: &str| {
        let raw = text(path);
        raw.is_empty() || holds(&raw, expected)
    };
    match kind {
        "Group" => optional(&["spec", "parent"], "group"),
        "System" => holds(&text(&["spec", "owner"]), "group"),
        "Component" => {
            let deps_hold = doc
                .get("spec")
                .and_then(|s| s.get("dependsOn"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|d| {
                    d.split_once(':')
                        .is_none_or(|(k, _)| k.eq_ignore_ascii_case("component"))
                })
                .all(|d| holds(d, "component"));
            holds(&text(&["spec", "owner"]), "group")
                && optional(&["spec", "system"], "system")
                && deps_hold
        }
        _ => false,
    }
}

pub(super) fn parse(yaml: &str, cancelled: &AtomicBool) -> Result<Documents, Status> {
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
        if !TYPED_KINDS.contains(&kind.as_str()) || !fits_typed(&kind, &doc) {
            // Any other kind, and a group, system or component Paved's
            // teams, systems and services cannot hold (a name that is not a
            // DNS label, another namespace, an owner that is not a team of
            // the default namespace…): stored as it came, as Backstage
            // would, checked by the domain.
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
                // The ones that can be teams (others are relations only).
                let children = r
                    .strings(&doc, "spec.children")
                    .iter()
                    .filter_map(|c| {
                        let c = match c.split_once(':') {
                            Some((kind, rest)) if kind.eq_ignore_ascii_case("group") => rest,
                            Some(_) => return None,
                            None => c.as_str(),
                        };
                        Name::parse(c.strip_prefix("default/").unwrap_or(c)).ok()
                    })
                    .collect();
                if let Some(name) = name {
                    docs.groups.push(GroupDoc {
                        index,
                        name,
                        profile,
                        parent,
                        members,
                        children,
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
        let typed_ok =
            docs.groups.len() + docs.systems.len() + docs.components.len() > typed_before;
        let document = serde_json::to_value(&doc).ok().filter(|_| typed_ok);
        let checked = document.as_ref().map(check_document);
        if let Some(Err(Rejection::Invalid(violations))) = &checked {
            // What only the descriptor says (refs in fields Paved does not
            // model, its size); the rest was judged above.
            for fv in violations.iter().filter(|fv| {
                UNMODELLED_FIELDS
                    .iter()
                    .any(|f| fv.field == *f || fv.field.starts_with(&format!("{f}[")))
            }) {
                r.err(&fv.field, &fv.description);
            }
        }
        if let (Some(document), Some(Ok(er))) = (document, checked) {
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
    // A group's `children` and its children's `parent`: one relation, as
    // in Backstage; a child of the file without a parent takes it from
    // there, one with another parent is a contradiction.
    let listed: Vec<(Name, Name, usize)> = docs
        .groups
        .iter()
        .flat_map(|g| {
            g.children
                .iter()
                .map(|c| (c.clone(), g.name.clone(), g.index))
        })
        .collect();
    for (child, parent, at) in listed {
        let Some(c) = docs.groups.iter_mut().find(|g| g.name == child) else {
            continue;
        };
        match &c.parent {
            None => c.parent = Some(parent),
            Some(p) if *p == parent => {}
            Some(p) => v.push(
                format!("documents[{}].spec.parent", c.index),
                format!(
                    "Group {child:?}: its parent is {p}, but group {parent} (documents[{at}]) \
                     lists it among its children"
                ),
            ),
        }
    }
    if v.is_empty() {
        Ok(docs)
    } else {
        Err(error::invalid(v.into_vec()))
    }
}

pub(super) type ComponentParts = (Name, ServiceSpec, Option<String>, BTreeSet<Name>);

/// The fields of a Group, System or Component descriptor whose refs only
/// the stored descriptor checks (the typed import reads the others).
const UNMODELLED_FIELDS: [&str; 7] = [
    "spec.providesApis",
    "spec.consumesApis",
    "spec.subcomponentOf",
    "spec.dependencyOf",
    "spec.domain",
    "spec.subdomainOf",
    "document",
];

/// The repository URL Backstage's own annotations imply: the
/// `backstage.io/source-location` (`url:` form), else the GitHub slug.
pub(super) fn repository_from<V: AsRef<str>>(annotations: &BTreeMap<String, V>) -> Option<String> {
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

pub(super) fn component(
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
