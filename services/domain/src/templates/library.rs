//! The published versions of a template (`paved.templates.template.<name>`).
//!
//! A version is the template document with the files its fetch steps read
//! (its skeleton), as one unit: a task runs a version, and a template
//! upgrade renders an older version beside the newer one with the same
//! parameters, so every version stays in the log as it was published.
//! Publishing what the latest version already holds appends nothing.
//!
//! Who publishes: the members of the team the template's `spec.owner`
//! names (and, when it moves to another team, of the team that held it),
//! and admins.

use serde_json::Value;

use super::{FETCH_ACTIONS, Template, check_template, source_dir};
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::catalog::EntityRef;
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::validate::Violations;

/// Most files one version holds.
pub const MAX_FILES: usize = 500;
/// Most bytes of one file.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most bytes of a version's files and document together (a version is
/// one message of the log, and NATS takes 1 MiB by default).
pub const MAX_TOTAL_BYTES: usize = 768 * 1024;

/// One published version of a template.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateVersion {
    /// 1, 2, 3, … in the order they were published.
    pub version: u64,
    /// The `Template` document (JSON of its YAML).
    pub document: Value,
    /// The template's files by their path in its directory
    /// (`skeleton/src/main.rs`), in path order.
    pub files: Vec<(String, String)>,
    /// SHA-256 of the document and the files (hex).
    pub digest: String,
}

impl TemplateVersion {
    /// The template the document describes (checked when it was published).
    pub fn template(&self) -> Result<Template, Rejection> {
        check_template(&self.document).map_err(Rejection::Invalid)
    }

    /// The team that owns it (`spec.owner`).
    pub fn owner(&self) -> Option<Name> {
        owner_team(&self.document)
    }
}

/// A template's versions, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateLibrary {
    pub versions: Vec<TemplateVersion>,
}

impl TemplateLibrary {
    pub fn latest(&self) -> Option<&TemplateVersion> {
        self.versions.last()
    }

    pub fn version(&self, version: u64) -> Option<&TemplateVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TemplateCommand {
    /// Publish `document` with `files` as the template's next version.
    Publish {
        document: Value,
        files: Vec<(String, String)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum TemplateEvent {
    Published(TemplateVersion),
}

impl TemplateEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Published(_) => "TemplatePublished",
        }
    }
}

impl From<TemplateEvent> for Event {
    fn from(e: TemplateEvent) -> Self {
        Event::Template(e)
    }
}

/// The team a template document's `spec.owner` names (`group:default/x`,
/// `group:x` or `x`).
pub fn owner_team(document: &Value) -> Option<Name> {
    let owner = document["spec"]["owner"].as_str()?;
    EntityRef::parse(owner, Some("Group"), "default")
        .ok()?
        .team()
}

/// SHA-256 over the document (its JSON) and every file (path and content).
pub fn digest(document: &Value, files: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(document.to_string().as_bytes());
    for (path, content) in files {
        h.update(b"\0");
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update((content.len() as u64).to_be_bytes());
        h.update(content.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A path inside the template's directory: relative, plain segments.
fn file_path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 512
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s != ".git")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

fn check_files(template: &Template, files: &[(String, String)], v: &mut Violations) {
    if files.len() > MAX_FILES {
        v.push(
            "files",
            format!("has {} files, at most {MAX_FILES}", files.len()),
        );
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, (path, content)) in files.iter().enumerate() {
        if !file_path_ok(path) {
            v.push(
                format!("files[{i}].path"),
                "must be a relative path of plain segments (no `..`, no leading `/`, no .git)",
            );
        } else if !seen.insert(path.as_str()) {
            v.push(format!("files[{i}].path"), "is listed twice");
        }
        if content.len() > MAX_FILE_BYTES {
            v.push(
                format!("files[{i}].content"),
                format!("is {} bytes, at most {MAX_FILE_BYTES}", content.len()),
            );
        }
    }
    // Every skeleton a fetch step names is among the files.
    for (i, step) in template.steps.iter().enumerate() {
        if !FETCH_ACTIONS.contains(&step.action.as_str()) {
            continue;
        }
        let Some(url) = step.input["url"].as_str().filter(|u| !u.contains("${{")) else {
            continue;
        };
        let Some(dir) = source_dir(url) else {
            continue;
        };
        let prefix = format!("{dir}/");
        if !files
            .iter()
            .any(|(p, _)| dir.is_empty() || p.starts_with(&prefix))
        {
            v.push(
                format!("spec.steps[{i}].input.url"),
                format!("names {url}, and the template has no files there"),
            );
        }
    }
}

impl Aggregate for TemplateLibrary {
    const KIND: AggregateKind = AggregateKind::Template;
    type Command = TemplateCommand;
    type Event = TemplateEvent;

    fn references(&self, command: &TemplateCommand, _: &References) -> Vec<AggregateRef> {
        let TemplateCommand::Publish { document, .. } = command;
        owner_team(document)
            .into_iter()
            .chain(self.latest().and_then(TemplateVersion::owner))
            .map(|t| AggregateRef::team(&t))
            .collect()
    }

    fn decide(
        &self,
        command: &TemplateCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<TemplateEvent>, Rejection> {
        let TemplateCommand::Publish { document, files } = command;
        if !ctx.principal.may_write() {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not publish templates: read-only",
                ctx.principal.name
            )));
        }
        let template = check_template(document).map_err(Rejection::Invalid)?;
        let mut v = Violations::new();
        if template.name != ctx.id.as_str() {
            v.push(
                "metadata.name",
                format!("is {:?}, but the template is {}", template.name, ctx.id),
            );
        }
        let owner = owner_team(document);
        if owner.is_none() {
            v.push(
                "spec.owner",
                "must name the team that owns the template (group:default/<team>)",
            );
        }
        check_files(&template, files, &mut v);
        let total = document.to_string().len()
            + files.iter().map(|(p, c)| p.len() + c.len()).sum::<usize>();
        if total > MAX_TOTAL_BYTES {
            v.push(
                "files",
                format!("the template and its files are {total} bytes, at most {MAX_TOTAL_BYTES}"),
            );
        }
        v.finish()?;
        let Some(owner) = owner else {
            return Err(Rejection::invalid("spec.owner", "is required"));
        };
        match ctx.refs.team(&owner) {
            None => {
                return Err(Rejection::Precondition(Precondition::BadReference {
                    field: "spec.owner".into(),
                    reference: AggregateRef::team(&owner),
                    why: String::new(),
                }));
            }
            Some(t) if t.retired.is_some() => {
                return Err(Rejection::Precondition(Precondition::RetiredReference(
                    AggregateRef::team(&owner),
                )));
            }
            Some(_) => {}
        }
        let holders = std::iter::once(owner).chain(self.latest().and_then(TemplateVersion::owner));
        for team in holders {
            if !ctx.principal.acts_for(&team) {
                return Err(Rejection::PermissionDenied(format!(
                    "{} may not publish template {}: it is team {team}'s (members and admins only)",
                    ctx.principal.name, ctx.id
                )));
            }
        }
        let mut files = files.clone();
        files.sort();
        let digest = digest(document, &files);
        if self.latest().is_some_and(|l| l.digest == digest) {
            return Ok(Vec::new());
        }
        Ok(vec![TemplateEvent::Published(TemplateVersion {
            version: self.latest().map_or(1, |l| l.version + 1),
            document: document.clone(),
            files,
            digest,
        })])
    }

    fn evolve(&mut self, event: &TemplateEvent) {
        let TemplateEvent::Published(version) = event;
        self.versions.push(version.clone());
    }

    fn select(event: &Event) -> Option<&TemplateEvent> {
        match event {
            Event::Template(e) => Some(e),
            _ => None,
        }
    }
}
