//! A plugin's versions in the marketplace (`paved.plugins.plugin.<name>`).
//!
//! A version is a manifest: who publishes it (a team), what it asks for
//! (scopes), which event types it wants and how they reach it (it pulls
//! with `Subscribe`, or Paved posts to its webhook). Versions are semver and
//! never change once published: publishing one again with the same
//! manifest appends nothing, with another manifest is refused. A version
//! can be deprecated (still installable, with a warning) or yanked (no new
//! installation or upgrade may pin it; installations on it keep running).
//!
//! Who publishes: members of the publishing team (and of the team that
//! published the plugin before, when it moves), and admins.

use std::collections::BTreeSet;

use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::scope::Scope;
use crate::validate::{MAX_DESCRIPTION, MAX_DISPLAY_NAME, Violations};

/// Most event types one manifest subscribes to.
pub const MAX_EVENT_TYPES: usize = 128;
/// Most versions a plugin keeps (each one a message of the log).
pub const MAX_VERSIONS: usize = 1000;

/// How events reach the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The plugin calls `PluginService.Subscribe` with its token.
    Pull,
    /// Paved posts each event to this URL (Standard Webhooks).
    Webhook { url: String },
}

/// What a version asks for and says of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Semver, e.g. `1.4.0`.
    pub version: String,
    /// The team that publishes it.
    pub publisher: Name,
    pub title: String,
    pub description: String,
    pub homepage: String,
    /// What an installation may grant, in their string form, sorted.
    pub scopes: Vec<Scope>,
    /// Event type names (`DeploymentSucceeded`), sorted; empty = every type
    /// its scopes let it read.
    pub event_types: Vec<String>,
    pub delivery: Delivery,
}

/// A version's standing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Deprecated { reason: String },
    Yanked { reason: String },
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Deprecated { .. } => "deprecated",
            Status::Yanked { .. } => "yanked",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginVersion {
    pub manifest: Manifest,
    pub status: Status,
}

/// A plugin: its versions in the order they were published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginListing {
    pub versions: Vec<PluginVersion>,
}

impl PluginListing {
    pub fn version(&self, version: &str) -> Option<&PluginVersion> {
        self.versions.iter().find(|v| v.manifest.version == version)
    }

    /// The team of the last published version.
    pub fn publisher(&self) -> Option<&Name> {
        self.versions.last().map(|v| &v.manifest.publisher)
    }

    /// The highest version that is not yanked.
    pub fn latest(&self) -> Option<&PluginVersion> {
        self.versions
            .iter()
            .filter(|v| !matches!(v.status, Status::Yanked { .. }))
            .max_by_key(|v| semver::Version::parse(&v.manifest.version).ok())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginCommand {
    Publish(Manifest),
    Deprecate { version: String, reason: String },
    Yank { version: String, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginEvent {
    Published(Manifest),
    Deprecated { version: String, reason: String },
    Yanked { version: String, reason: String },
}

impl PluginEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Published(_) => "PluginVersionPublished",
            Self::Deprecated { .. } => "PluginVersionDeprecated",
            Self::Yanked { .. } => "PluginVersionYanked",
        }
    }
}

impl From<PluginEvent> for Event {
    fn from(e: PluginEvent) -> Self {
        Event::Plugin(e)
    }
}

/// Checks a manifest's fields, each problem by its path in the request.
pub fn check_manifest(m: &Manifest, v: &mut Violations) {
    if semver::Version::parse(&m.version).is_err() {
        v.push(
            "manifest.version",
            "must be a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])",
        );
    } else if m.version.len() > 64 {
        v.push("manifest.version", "must be at most 64 characters");
    }
    v.line("manifest.title", &m.title, MAX_DISPLAY_NAME);
    v.text("manifest.description", &m.description, MAX_DESCRIPTION);
    v.url("manifest.homepage", &m.homepage);
    if m.scopes.is_empty() {
        v.push("manifest.scopes", "must ask for at least one scope");
    }
    for (i, s) in m.scopes.iter().enumerate() {
        if !s.grantable() {
            v.push(
                format!("manifest.scopes[{i}]"),
                format!("{s} cannot be granted to a plugin"),
            );
        }
    }
    if m.event_types.len() > MAX_EVENT_TYPES {
        v.push(
            "manifest.event_types",
            format!("at most {MAX_EVENT_TYPES} event types"),
        );
    }
    for (i, t) in m.event_types.iter().enumerate() {
        if !Event::TYPE_NAMES.contains(&t.as_str()) {
            v.push(
                format!("manifest.event_types[{i}]"),
                format!("{t:?} is not an event type of the log"),
            );
        }
    }
    match &m.delivery {
        Delivery::Pull => {}
        Delivery::Webhook { url } if url.is_empty() => {
            v.push("manifest.webhook_url", "is required for webhook delivery")
        }
        Delivery::Webhook { url } => v.url("manifest.webhook_url", url),
    }
}

impl Aggregate for PluginListing {
    const KIND: AggregateKind = AggregateKind::Plugin;
    type Command = PluginCommand;
    type Event = PluginEvent;

    fn references(&self, command: &PluginCommand, _: &References) -> Vec<AggregateRef> {
        match command {
            PluginCommand::Publish(m) => vec![AggregateRef::team(&m.publisher)],
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &PluginCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<PluginEvent>, Rejection> {
        // The publishing team's members change the listing; admins too.
        let holders: BTreeSet<&Name> = match command {
            PluginCommand::Publish(m) => std::iter::once(&m.publisher)
                .chain(self.publisher())
                .collect(),
            _ => self.publisher().into_iter().collect(),
        };
        match command {
            PluginCommand::Publish(m) => {
                let mut v = Violations::new();
                check_manifest(m, &mut v);
                v.finish()?;
                match ctx.refs.team(&m.publisher) {
                    None => {
                        return Err(Rejection::Precondition(Precondition::BadReference {
                            field: "manifest.publisher".into(),
                            reference: AggregateRef::team(&m.publisher),
                            why: String::new(),
                        }));
                    }
                    Some(t) if t.retired.is_some() => {
                        return Err(Rejection::Precondition(Precondition::RetiredReference(
                            AggregateRef::team(&m.publisher),
                        )));
                    }
                    Some(_) => {}
                }
                permitted(ctx, &holders)?;
                if let Some(existing) = self.version(&m.version) {
                    return if &existing.manifest == m {
                        Ok(Vec::new())
                    } else {
                        Err(Rejection::AlreadyExists(format!(
                            "version {} of plugin {} (published versions never change: publish a new one)",
                            m.version, ctx.id
                        )))
                    };
                }
                if self.versions.len() >= MAX_VERSIONS {
                    return Err(Rejection::Precondition(Precondition::State {
                        what: format!("plugin {}", ctx.id),
                        state: format!("at {MAX_VERSIONS} versions"),
                        why: "no more versions can be published".into(),
                    }));
                }
                Ok(vec![PluginEvent::Published(m.clone())])
            }
            PluginCommand::Deprecate { version, reason }
            | PluginCommand::Yank { version, reason } => {
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                let Some(existing) = self.version(version) else {
                    return Err(Rejection::NotFound(format!(
                        "version {version} of plugin {}",
                        ctx.id
                    )));
                };
                permitted(ctx, &holders)?;
                let yank = matches!(command, PluginCommand::Yank { .. });
                match (&existing.status, yank) {
                    // Already there, or further (a yanked version is not deprecated again).
                    (Status::Yanked { .. }, _) | (Status::Deprecated { .. }, false) => {
                        Ok(Vec::new())
                    }
                    (_, true) => Ok(vec![PluginEvent::Yanked {
                        version: version.clone(),
                        reason: reason.clone(),
                    }]),
                    (_, false) => Ok(vec![PluginEvent::Deprecated {
                        version: version.clone(),
                        reason: reason.clone(),
                    }]),
                }
            }
        }
    }

    fn evolve(&mut self, event: &PluginEvent) {
        match event {
            PluginEvent::Published(m) => self.versions.push(PluginVersion {
                manifest: m.clone(),
                status: Status::Active,
            }),
            PluginEvent::Deprecated { version, reason } => {
                if let Some(v) = self
                    .versions
                    .iter_mut()
                    .find(|v| &v.manifest.version == version)
                {
                    v.status = Status::Deprecated {
                        reason: reason.clone(),
                    };
                }
            }
            PluginEvent::Yanked { version, reason } => {
                if let Some(v) = self
                    .versions
                    .iter_mut()
                    .find(|v| &v.manifest.version == version)
                {
                    v.status = Status::Yanked {
                        reason: reason.clone(),
                    };
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&PluginEvent> {
        match event {
            Event::Plugin(e) => Some(e),
            _ => None,
        }
    }
}

fn permitted(ctx: &Context<'_>, holders: &BTreeSet<&Name>) -> Result<(), Rejection> {
    match holders.iter().find(|team| !ctx.principal.acts_for(team)) {
        None => Ok(()),
        Some(team) => Err(Rejection::PermissionDenied(format!(
            "{} may not change plugin {}: it is published by team {team} (its members and admins only)",
            ctx.principal.name, ctx.id
        ))),
    }
}
