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
//!
//! A webhook plugin's deliveries are recorded here by the delivery worker
//! ([`WEBHOOK_WORKER`]): a delivered message moves the cursor; a failed
//! attempt is recorded with when it is tried again; a message that failed
//! its last attempt goes to the dead letters (and the cursor moves past
//! it), where an admin may ask for it again; an endpoint that answers
//! `410 Gone` is disabled until an upgrade (to any version, the same one
//! included) enables it again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

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

/// The longest overlap a token rotation may give the earlier tokens.
pub const MAX_OVERLAP_SECONDS: u32 = 30 * 24 * 3600;

/// The principal of the webhook delivery worker.
pub const WEBHOOK_WORKER: &str = "worker:plugin-webhooks";

/// The message at the head of a webhook's queue that is failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    pub sequence: u64,
    pub attempts: u32,
    pub retry_at: DateTime<Utc>,
}

/// A message that failed its last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub attempts: u32,
    /// The last HTTP status (0: no answer).
    pub status: u32,
    pub error: String,
    /// An admin asked for it again and it was not sent yet.
    pub replay_pending: bool,
    /// A replay delivered it.
    pub delivered: bool,
    /// Replays asked for so far (each one's outcome is recorded once).
    pub replays: u32,
}

/// One failed attempt, as the delivery worker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub sequence: u64,
    /// The HTTP status (0: no answer: refused, timed out, forbidden address).
    pub status: u32,
    pub error: String,
}

/// An installation's state; `grant` is `None` before it is installed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installation {
    pub grant: Option<Grant>,
    /// The last sequence the plugin acknowledged (0: none).
    pub cursor: u64,
    /// Why it was uninstalled, once it is.
    pub uninstalled: Option<String>,
    /// The webhook's failing head message, if any.
    pub failing: Option<Failing>,
    /// By sequence.
    pub dead_letters: BTreeMap<u64, DeadLetter>,
    /// Why the webhook endpoint is disabled (it answered 410 Gone).
    pub disabled: Option<String>,
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
    /// (Worker) the webhook took everything up to `sequence`.
    Delivered {
        sequence: u64,
    },
    /// (Worker) an attempt failed: tried again at `retry_at`, or, when
    /// `retry_at` is `None`, the message goes to the dead letters.
    Failed {
        attempt: Attempt,
        retry_at: Option<DateTime<Utc>>,
    },
    /// (Worker) the endpoint answered 410 Gone.
    Disable {
        attempt: Attempt,
    },
    /// (Admin) send a dead letter again.
    Replay {
        sequence: u64,
    },
    /// (Admin) a new token and webhook secret; the earlier ones work for
    /// `overlap_seconds` more (the secrets themselves never enter the log).
    RotateToken {
        overlap_seconds: u32,
    },
    /// (Worker) a replay's outcome.
    Replayed {
        attempt: Attempt,
        delivered: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallationEvent {
    Installed(Grant),
    Upgraded {
        version: String,
        scopes: Vec<Scope>,
    },
    Acknowledged {
        sequence: u64,
    },
    Uninstalled {
        reason: String,
    },
    /// Attempt `number` at the message failed; the next is at `retry_at`.
    WebhookAttemptFailed {
        attempt: Attempt,
        number: u32,
        retry_at: DateTime<Utc>,
    },
    /// The message failed its last attempt (`attempts` in all).
    WebhookDeadLettered {
        attempt: Attempt,
        attempts: u32,
    },
    WebhookEndpointDisabled {
        attempt: Attempt,
    },
    WebhookReplayRequested {
        sequence: u64,
    },
    WebhookReplayed {
        attempt: Attempt,
        delivered: bool,
    },
    TokenRotated {
        overlap_seconds: u32,
    },
}

impl InstallationEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Installed(_) => "PluginInstalled",
            Self::Upgraded { .. } => "PluginInstallationUpgraded",
            Self::Acknowledged { .. } => "PluginEventsAcknowledged",
            Self::Uninstalled { .. } => "PluginUninstalled",
            Self::WebhookAttemptFailed { .. } => "WebhookAttemptFailed",
            Self::WebhookDeadLettered { .. } => "WebhookDeadLettered",
            Self::WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            Self::WebhookReplayRequested { .. } => "WebhookReplayRequested",
            Self::WebhookReplayed { .. } => "WebhookReplayed",
            Self::TokenRotated { .. } => "PluginTokenRotated",
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

impl Installation {
    /// The events of a delivery worker's report.
    fn record(&self, command: &InstallationCommand) -> Vec<InstallationEvent> {
        match command {
            InstallationCommand::Delivered { sequence } if *sequence > self.cursor => {
                vec![InstallationEvent::Acknowledged {
                    sequence: *sequence,
                }]
            }
            InstallationCommand::Failed { attempt, .. } if attempt.sequence <= self.cursor => {
                Vec::new()
            }
            InstallationCommand::Failed { attempt, retry_at } => {
                let number = match &self.failing {
                    Some(f) if f.sequence == attempt.sequence => f.attempts + 1,
                    _ => 1,
                };
                match retry_at {
                    Some(at) => vec![InstallationEvent::WebhookAttemptFailed {
                        attempt: attempt.clone(),
                        number,
                        retry_at: *at,
                    }],
                    None => vec![
                        InstallationEvent::WebhookDeadLettered {
                            attempt: attempt.clone(),
                            attempts: number,
                        },
                        InstallationEvent::Acknowledged {
                            sequence: attempt.sequence,
                        },
                    ],
                }
            }
            InstallationCommand::Disable { .. } if self.disabled.is_some() => Vec::new(),
            InstallationCommand::Disable { attempt } => {
                vec![InstallationEvent::WebhookEndpointDisabled {
                    attempt: attempt.clone(),
                }]
            }
            InstallationCommand::Replayed { attempt, delivered } => {
                match self.dead_letters.get(&attempt.sequence) {
                    Some(d) if d.replay_pending => vec![InstallationEvent::WebhookReplayed {
                        attempt: attempt.clone(),
                        delivered: *delivered,
                    }],
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
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
                if &current.version == version
                    && current.scopes == scopes
                    && self.disabled.is_none()
                {
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
            InstallationCommand::Delivered { .. }
            | InstallationCommand::Failed { .. }
            | InstallationCommand::Disable { .. }
            | InstallationCommand::Replayed { .. } => {
                if ctx.principal.name != WEBHOOK_WORKER {
                    return Err(Rejection::PermissionDenied(format!(
                        "{} may not record webhook deliveries: the delivery worker only",
                        ctx.principal.name
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
                Ok(self.record(command))
            }
            InstallationCommand::Replay { sequence } => {
                admins_only(ctx, "replay a dead letter of")?;
                match self.dead_letters.get(sequence) {
                    None => Err(Rejection::NotFound(format!(
                        "dead letter {sequence} of plugin installation {}",
                        ctx.id
                    ))),
                    Some(d) if d.replay_pending => Ok(Vec::new()),
                    Some(_) if self.uninstalled.is_some() => Err(gone()),
                    Some(_) => Ok(vec![InstallationEvent::WebhookReplayRequested {
                        sequence: *sequence,
                    }]),
                }
            }
            InstallationCommand::RotateToken { overlap_seconds } => {
                admins_only(ctx, "rotate the token of")?;
                if *overlap_seconds > MAX_OVERLAP_SECONDS {
                    return Err(Rejection::invalid(
                        "overlap_seconds",
                        format!("at most {MAX_OVERLAP_SECONDS} (30 days)"),
                    ));
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
                Ok(vec![InstallationEvent::TokenRotated {
                    overlap_seconds: *overlap_seconds,
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
                self.disabled = None;
                self.failing = None;
            }
            InstallationEvent::Acknowledged { sequence } => {
                self.cursor = self.cursor.max(*sequence);
                if self
                    .failing
                    .as_ref()
                    .is_some_and(|f| f.sequence <= *sequence)
                {
                    self.failing = None;
                }
            }
            InstallationEvent::Uninstalled { reason } => self.uninstalled = Some(reason.clone()),
            InstallationEvent::WebhookAttemptFailed {
                attempt,
                number,
                retry_at,
            } => {
                self.failing = Some(Failing {
                    sequence: attempt.sequence,
                    attempts: *number,
                    retry_at: *retry_at,
                });
            }
            InstallationEvent::WebhookDeadLettered { attempt, attempts } => {
                self.failing = None;
                self.dead_letters.insert(
                    attempt.sequence,
                    DeadLetter {
                        attempts: *attempts,
                        status: attempt.status,
                        error: attempt.error.clone(),
                        replay_pending: false,
                        delivered: false,
                        replays: 0,
                    },
                );
            }
            InstallationEvent::WebhookEndpointDisabled { attempt } => {
                self.disabled = Some(format!(
                    "the endpoint answered {} to sequence {}",
                    attempt.status, attempt.sequence
                ));
            }
            InstallationEvent::WebhookReplayRequested { sequence } => {
                if let Some(d) = self.dead_letters.get_mut(sequence) {
                    d.replay_pending = true;
                    d.replays += 1;
                }
            }
            InstallationEvent::TokenRotated { .. } => {}
            InstallationEvent::WebhookReplayed { attempt, delivered } => {
                if let Some(d) = self.dead_letters.get_mut(&attempt.sequence) {
                    d.replay_pending = false;
                    d.delivered |= *delivered;
                    d.status = attempt.status;
                    d.error = attempt.error.clone();
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&InstallationEvent> {
        match event {
            Event::Installation(e) => Some(e),
            _ => None,
        }
    }
}
