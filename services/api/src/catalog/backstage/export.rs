//! The catalog as Backstage descriptor YAML: typed entities as Paved sees
//! them (or the descriptor they came as, while it still says the same),
//! then every stored entity of another kind as it came.

use super::*;

/// The catalog as Backstage descriptor YAML.
pub async fn export(
    pool: &PgPool,
    include_retired: bool,
) -> Result<pb::ExportBackstageResponse, Status> {
    let docs = documents(pool, include_retired).await?;
    let entities = docs.len() as u32;
    let mut yaml = String::new();
    for d in &docs {
        push_document(&mut yaml, d)?;
    }
    Ok(pb::ExportBackstageResponse { yaml, entities })
}

/// Appends `doc` to `yaml` as one document of a multi-document file.
pub fn push_document(yaml: &mut String, doc: &serde_json::Value) -> Result<(), Status> {
    yaml.push_str("---\n");
    yaml.push_str(&serde_yaml_ng::to_string(doc).map_err(|e| error::internal(&e))?);
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    Ok(())
}

/// Every document of the export, in its order: groups, systems,
/// components (each as it came while it still means what the catalog
/// says), then the entities of other kinds.
pub async fn documents(
    pool: &PgPool,
    include_retired: bool,
) -> Result<Vec<serde_json::Value>, Status> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    for t in crate::catalog::queries::list_all_teams(pool, include_retired).await? {
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
    for y in crate::catalog::queries::list_all_systems(pool, include_retired).await? {
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
    let services = crate::catalog::queries::list_all_services(pool, include_retired).await?;
    for s in &services {
        docs.push(component_doc(s));
    }
    // The descriptors the teams, systems and services came as: given back
    // as they came while they still mean what the catalog says.
    let companions = crate::catalog::queries::typed_descriptors(pool).await?;
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
    docs.extend(crate::catalog::queries::list_all_entities(pool).await?);
    Ok(docs)
}

/// A service as Backstage's Component descriptor.
pub(super) fn component_doc(s: &pb::Service) -> serde_json::Value {
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
pub(super) enum Meaning {
    Group(TeamProfile, Option<Name>, BTreeSet<String>),
    System(Name, String, String),
    Component(Name, Box<ServiceSpec>, Option<String>, BTreeSet<Name>),
}

pub(super) fn meaning(doc: &serde_json::Value) -> Option<Meaning> {
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
pub(super) fn descriptor_or_merge(
    c: &serde_json::Value,
    d: serde_json::Value,
) -> serde_json::Value {
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

pub(super) fn entity(
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
