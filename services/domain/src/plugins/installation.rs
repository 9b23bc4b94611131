//! One installation of a plugin (`paved.plugins.installation.<name>`).
//!
//! Admins install a version of a plugin under a name of their choosing,
//! granting a subset of the scopes the version asks for, and optionally a
//! team the plugin acts for when it writes (then the catalog's ownership
//! rules apply to it as to a member of that team). Upgrading to another
//! version keeps the grant unless the admin gives a new one; a version
//! asking for more than was granted gets no more without that new grant.
//!
//! The installation's cursor is the last sequence of the log the plugin
//! acknowledged; `Subscribe` resumes after it. Acknowledgements are
//! cumulative: an older one than the cursor changes nothing.
//!
//! Uninstalling is final (the name is not reused: what it received stays
//! an audit query under that name).

use std::collections::BTreeSet;

use super::marketplace::{PluginListing, Status};
use super::principal_name;
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::scope::Scope;
use crate::validate::Violations;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub plugin: Name,
    pub version: String,
    /// Sorted, each one asked for by the version.
    pub scopes: Vec<Scope>,
    /// The team the plugin acts for when it writes.
    pub team: Option<Name>,
}

/// An installation's state; `grant` is `None` before it is installed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installation {
    pub grant: Option<Grant>,
    /// The last sequence the plugin acknowledged (0: none).
    pub cursor: u64,
    /// Why it was uninstalled, once it is.
    pub uninstalled: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallationCommand {
    Install(Grant),
    /// Pin `version`; `scopes` is the new grant, or `None` to keep it.
    Upgrade {
        version: String,
        scopes: Option<Vec<Scope>>,
    },
    /// The plugin has processed everything up to `sequence`.
    Acknowledge {
        sequence: u64,
    },
    Uninstall {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallationEvent {
    Installed(Grant),
    Upgraded { version: String, scopes: Vec<Scope> },
    Acknowledged { sequence: u64 },
    Uninstalled { reason: String },
}

impl InstallationEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Installed(_) => "PluginInstalled",
            Self::Upgraded { .. } => "PluginInstallationUpgraded",
            Self::Acknowledged { .. } => "PluginEventsAcknowledged",
            Self::Uninstalled { .. } => "PluginUninstalled",
        }
    }
}

impl From<InstallationEvent> for Event {
    fn from(e: InstallationEvent) -> Self {
        Event::Installation(e)
    }
}

fn plugin_ref(plugin: &Name) -> AggregateRef {
    AggregateRef {
        kind: AggregateKind::Plugin,
        id: plugin.clone(),
    }
}

fn admins_only(ctx: &Context<'_>, what: &str) -> Result<(), Rejection> {
    if ctx.principal.is_admin() {
        Ok(())
    } else {
        Err(Rejection::PermissionDenied(format!(
            "{} may not {what} plugin installation {}: admins only",
            ctx.principal.name, ctx.id
        )))
    }
}

/// The version must exist and not be yanked; the scopes must be asked for by it.
fn check_pin(
    listing: &PluginListing,
    plugin: &Name,
    version: &str,
    scopes: &[Scope],
) -> Result<(), Rejection> {
    let Some(v) = listing.version(version) else {
        return Err(Rejection::Precondition(Precondition::BadReference {
            field: "version".into(),
            reference: plugin_ref(plugin),
            why: if listing.versions.is_empty() {
                String::new()
            } else {
                format!("has no version {version}")
            },
        }));
    };
    if let Status::Yanked { reason } = &v.status {
        return Err(Rejection::Precondition(Precondition::State {
            what: format!("version {version} of plugin {plugin}"),
            state: "yanked".into(),
            why: reason.clone(),
        }));
    }
    let mut violations = Violations::new();
    for (i, s) in scopes.iter().enumerate() {
        if !v.manifest.scopes.contains(s) {
            violations.push(
                format!("scopes[{i}]"),
                format!("{s} is not asked for by version {version} of plugin {plugin}"),
            );
        }
    }
    violations.finish()
}

fn sorted(scopes: &[Scope]) -> Vec<Scope> {
    scopes
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Aggregate for Installation {
    const KIND: AggregateKind = AggregateKind::Installation;
    type Command = InstallationCommand;
    type Event = InstallationEvent;

    fn references(&self, command: &InstallationCommand, _: &References) -> Vec<AggregateRef> {
        match (command, &self.grant) {
            (InstallationCommand::Install(g), _) => std::iter::once(plugin_ref(&g.plugin))
                .chain(g.team.iter().map(AggregateRef::team))
                .collect(),
            (InstallationCommand::Upgrade { .. }, Some(g)) => vec![plugin_ref(&g.plugin)],
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &InstallationCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<InstallationEvent>, Rejection> {
        let gone = || {
            Rejection::Precondition(Precondition::State {
                what: format!("plugin installation {}", ctx.id),
                state: "uninstalled".into(),
                why: self.uninstalled.clone().unwrap_or_default(),
            })
        };
        match command {
            InstallationCommand::Install(g) => {
                admins_only(ctx, "create")?;
                if self.uninstalled.is_some() {
                    return Err(gone());
                }
                let g = Grant {
                    scopes: sorted(&g.scopes),
                    ..g.clone()
                };
                if let Some(existing) = &self.grant {
                    return if existing == &g {
                        Ok(Vec::new())
                    } else {
                        Err(Rejection::AlreadyExists(format!(
                            "plugin installation {} (of {} {})",
                            ctx.id, existing.plugin, existing.version
                        )))
                    };
                }
                let listing = ctx.refs.plugin(&g.plugin).cloned().unwrap_or_default();
                check_pin(&listing, &g.plugin, &g.version, &g.scopes)?;
                if let Some(team) = &g.team {
                    match ctx.refs.team(team) {
                        None => {
                            return Err(Rejection::Precondition(Precondition::BadReference {
                                field: "team".into(),
                                reference: AggregateRef::team(team),
                                why: String::new(),
                            }));
                        }
                        Some(t) if t.retired.is_some() => {
                            return Err(Rejection::Precondition(Precondition::RetiredReference(
                                AggregateRef::team(team),
                            )));
                        }
                        Some(_) => {}
                    }
                }
                Ok(vec![InstallationEvent::Installed(g)])
            }
            InstallationCommand::Upgrade { version, scopes } => {
                admins_only(ctx, "upgrade")?;
                let Some(current) = &self.grant else {
                    return Err(Rejection::NotFound(format!(
                        "plugin installation {}",
                        ctx.id
                    )));
                };
                if self.uninstalled.is_some() {
                    return Err(gone());
                }
                let scopes = sorted(scopes.as_deref().unwrap_or(&current.scopes));
                let listing = ctx
                    .refs
                    .plugin(&current.plugin)
                    .cloned()
                    .unwrap_or_default();
                check_pin(&listing, &current.plugin, version, &scopes)?;
                if &current.version == version && current.scopes == scopes {
                    return Ok(Vec::new());
                }
                Ok(vec![InstallationEvent::Upgraded {
                    version: version.clone(),
                    scopes,
                }])
            }
            InstallationCommand::Acknowledge { sequence } => {
                if ctx.principal.name != principal_name(ctx.id) {
                    return Err(Rejection::PermissionDenied(format!(
                        "{} may not acknowledge events for plugin installation {}: its own token only",
                        ctx.principal.name, ctx.id
                    )));
                }
                if self.grant.is_none() {
                    return Err(Rejection::NotFound(format!(
                        "plugin installation {}",
                        ctx.id
                    )));
                }
                if self.uninstalled.is_some() {
                    return Err(gone());
                }
                if *sequence <= self.cursor {
                    return Ok(Vec::new());
                }
                Ok(vec![InstallationEvent::Acknowledged {
                    sequence: *sequence,
                }])
            }
            InstallationCommand::Uninstall { reason } => {
                admins_only(ctx, "remove")?;
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                if self.grant.is_none() {
                    return Err(Rejection::NotFound(format!(
                        "plugin installation {}",
                        ctx.id
                    )));
                }
                if self.uninstalled.is_some() {
                    return Ok(Vec::new());
                }
                Ok(vec![InstallationEvent::Uninstalled {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(&mut self, event: &InstallationEvent) {
        match event {
            InstallationEvent::Installed(g) => self.grant = Some(g.clone()),
            InstallationEvent::Upgraded { version, scopes } => {
                if let Some(g) = &mut self.grant {
                    g.version = version.clone();
                    g.scopes = scopes.clone();
                }
            }
            InstallationEvent::Acknowledged { sequence } => {
                self.cursor = self.cursor.max(*sequence);
            }
            InstallationEvent::Uninstalled { reason } => self.uninstalled = Some(reason.clone()),
        }
    }

    fn select(event: &Event) -> Option<&InstallationEvent> {
        match event {
            Event::Installation(e) => Some(e),
            _ => None,
        }
    }
}
