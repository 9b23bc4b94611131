//! Delivery: deployments (requested through Paved and driven by the Argo CD
//! worker, or recorded after the fact), changes (commits that reach
//! production) and incidents. The DORA figures are computed from these in
//! [`crate::dora`].
//!
//! Who may do what: a member of the owning team (or an admin) requests and
//! records deployments and changes of its services, and opens, links and
//! resolves incidents of its services (every service an incident names must
//! be the principal's team's); only admins (the workers run as admin
//! principals such as `worker:argocd`) move a requested deployment through
//! started → succeeded | failed. Permission is checked before any other
//! business rule, so a refusal tells another team nothing about the entity.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::catalog::{Service, require_admin, service_repository};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::validate::Violations;

/// The environment DORA measures.
pub const PRODUCTION: &str = "production";
/// How far in the future a recorded time may be (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
pub const MAX_REVISION: usize = 200;
pub const MAX_MESSAGE: usize = 2000;
pub const MAX_COMMITS: usize = 1000;

/// A full 40-character lowercase hex commit SHA?
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn commits_valid(v: &mut Violations, field: &str, commits: &[String]) {
    if commits.len() > MAX_COMMITS {
        v.push(field, format!("at most {MAX_COMMITS} commits"));
    }
    for (i, c) in commits.iter().enumerate() {
        if !is_commit_sha(c) {
            v.push(
                format!("{field}[{i}]"),
                "must be a full 40-character lowercase hex commit SHA",
            );
        }
    }
}

fn not_future(v: &mut Violations, field: &str, t: DateTime<Utc>, now: DateTime<Utc>) {
    if t > now + MAX_CLOCK_SKEW {
        v.push(field, "is in the future");
    }
}

/// The live service a delivery command is about, and the right to act for
/// it: checked before the service's state (retired) says anything.
fn service_for<'r>(ctx: &Context<'r>, service: &Name) -> Result<&'r Service, Rejection> {
    let s = owned_service(ctx, service)?;
    if s.retired.is_some() {
        return Err(Rejection::Precondition(Precondition::RetiredReference(
            AggregateRef::service(service),
        )));
    }
    Ok(s)
}

/// A service that exists (retired or not) and that the principal acts for.
fn owned_service<'r>(ctx: &Context<'r>, service: &Name) -> Result<&'r Service, Rejection> {
    let Some(s) = ctx.refs.service(service) else {
        return Err(Rejection::Precondition(Precondition::MissingReference(
            AggregateRef::service(service),
        )));
    };
    if !ctx.principal.acts_for(&s.owner) {
        return Err(Rejection::PermissionDenied(format!(
            "{} may not act on the delivery of {service}: owned by team {}",
            ctx.principal.name, s.owner
        )));
    }
    Ok(s)
}

/// Deployment `deployment`, named by `field`, must exist and have deployed
/// one of `services`.
fn caused_by_check(
    ctx: &Context<'_>,
    field: &str,
    deployment: &Name,
    services: &[Name],
) -> Result<(), Rejection> {
    let reference = AggregateRef {
        kind: AggregateKind::Deployment,
        id: deployment.clone(),
    };
    let why = match ctx.refs.deployment(deployment) {
        None => String::new(),
        Some(d) if services.contains(&d.target.service) => return Ok(()),
        Some(d) => format!(
            "deployed {}, which the incident does not name",
            d.target.service
        ),
    };
    Err(Rejection::Precondition(Precondition::BadReference {
        field: field.to_owned(),
        reference,
        why,
    }))
}

// ---- deployments ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Requested through Paved; the worker has not started it.
    Requested,
    /// The worker asked Argo CD to sync.
    Running,
    Succeeded,
    Failed,
    /// Failed before Argo CD was asked (no environment configured, say):
    /// nothing was deployed, so it is no deployment for DORA either.
    NotStarted,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotStarted => "not_started",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::NotStarted)
    }

    /// Where an outcome leaves a deployment.
    pub fn of(outcome: &Outcome) -> Self {
        if outcome.succeeded {
            Self::Succeeded
        } else {
            Self::Failed
        }
    }
}

/// What to deploy, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: Name,
    pub environment: Name,
    /// Git revision (SHA, tag or branch) given to Argo CD.
    pub revision: String,
    /// The commits this deployment ships, if the caller knows them.
    pub commits: Vec<String>,
    /// The deployment this one rolls back (a remediation).
    pub rollback_of: Option<Name>,
}

impl Target {
    fn validate(&self, v: &mut Violations) {
        if self.revision.trim().is_empty() {
            v.push("revision", "is required");
        }
        v.line("revision", &self.revision, MAX_REVISION);
        commits_valid(v, "commits", &self.commits);
    }
}

/// How a finished deployment ended, as the deployer reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub succeeded: bool,
    /// The revision actually deployed (Argo CD's `syncResult.revision`).
    pub revision: String,
    /// Argo CD's `operationState.phase` (Succeeded, Failed, Error, …).
    pub phase: String,
    /// Argo CD's `health.status` (Healthy, Degraded, …).
    pub health: String,
    pub message: String,
    pub finished_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub id: Name,
    pub target: Target,
    /// `paved` for deployments Paved drove; otherwise who reported it
    /// (`pipeline`, `argocd-notification`, an importer…).
    pub source: String,
    pub status: DeploymentStatus,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The Argo CD application it was synced through.
    pub application: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentCommand {
    /// Deploy through Paved (the Argo CD worker carries it out).
    Request(Target),
    /// A deployment that happened elsewhere, with its real times.
    Record {
        target: Target,
        source: String,
        started_at: DateTime<Utc>,
        outcome: Outcome,
    },
    /// The worker asked Argo CD to sync `application`.
    Start {
        application: String,
        started_at: DateTime<Utc>,
    },
    /// The worker saw the outcome.
    Finish(Outcome),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentEvent {
    Requested {
        id: Name,
        target: Target,
        requested_at: DateTime<Utc>,
    },
    Recorded {
        id: Name,
        target: Target,
        source: String,
        started_at: DateTime<Utc>,
        outcome: Outcome,
    },
    Started {
        application: String,
        started_at: DateTime<Utc>,
    },
    Succeeded(Outcome),
    Failed(Outcome),
}

impl DeploymentEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Requested { .. } => "DeploymentRequested",
            Self::Recorded { .. } => "DeploymentRecorded",
            Self::Started { .. } => "DeploymentStarted",
            Self::Succeeded(_) => "DeploymentSucceeded",
            Self::Failed(_) => "DeploymentFailed",
        }
    }
}

impl From<DeploymentEvent> for Event {
    fn from(e: DeploymentEvent) -> Self {
        Event::Deployment(e)
    }
}

fn outcome_valid(v: &mut Violations, o: &Outcome, now: DateTime<Utc>) {
    v.line("outcome.revision", &o.revision, MAX_REVISION);
    v.line("outcome.phase", &o.phase, 100);
    v.line("outcome.health", &o.health, 100);
    v.text("outcome.message", &o.message, MAX_MESSAGE);
    not_future(v, "outcome.finished_at", o.finished_at, now);
}

impl Aggregate for Option<Deployment> {
    const KIND: AggregateKind = AggregateKind::Deployment;
    type Command = DeploymentCommand;
    type Event = DeploymentEvent;

    fn references(&self, command: &DeploymentCommand, _: &References) -> Vec<AggregateRef> {
        match command {
            DeploymentCommand::Request(t) | DeploymentCommand::Record { target: t, .. } => {
                vec![AggregateRef::service(&t.service)]
            }
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &DeploymentCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<DeploymentEvent>, Rejection> {
        let me = format!("deployment {:?}", ctx.id.as_str());
        match (self, command) {
            (existing, DeploymentCommand::Request(target)) => {
                let mut v = Violations::new();
                target.validate(&mut v);
                v.finish()?;
                service_for(ctx, &target.service)?;
                if existing.is_some() {
                    return Err(Rejection::AlreadyExists(me));
                }
                Ok(vec![DeploymentEvent::Requested {
                    id: ctx.id.clone(),
                    target: target.clone(),
                    requested_at: ctx.now,
                }])
            }
            (
                existing,
                DeploymentCommand::Record {
                    target,
                    source,
                    started_at,
                    outcome,
                },
            ) => {
                let mut v = Violations::new();
                target.validate(&mut v);
                if source.trim().is_empty() {
                    v.push("source", "is required (e.g. pipeline)");
                }
                v.line("source", source, 100);
                outcome_valid(&mut v, outcome, ctx.now);
                not_future(&mut v, "started_at", *started_at, ctx.now);
                if outcome.finished_at < *started_at {
                    v.push("outcome.finished_at", "is before started_at");
                }
                v.finish()?;
                service_for(ctx, &target.service)?;
                if existing.is_some() {
                    return Err(Rejection::AlreadyExists(me));
                }
                Ok(vec![DeploymentEvent::Recorded {
                    id: ctx.id.clone(),
                    target: target.clone(),
                    source: source.clone(),
                    started_at: *started_at,
                    outcome: outcome.clone(),
                }])
            }
            (None, _) => Err(Rejection::NotFound(me)),
            (
                Some(d),
                DeploymentCommand::Start {
                    application,
                    started_at,
                },
            ) => {
                require_admin(ctx, "start deployments")?;
                let mut v = Violations::new();
                if application.trim().is_empty() {
                    v.push("application", "is required");
                }
                v.line("application", application, 253);
                v.finish()?;
                match d.status {
                    DeploymentStatus::Requested => Ok(vec![DeploymentEvent::Started {
                        application: application.clone(),
                        started_at: *started_at,
                    }]),
                    // Started already (a retried worker step): nothing new.
                    DeploymentStatus::Running => Ok(Vec::new()),
                    _ => Err(Rejection::Precondition(Precondition::Finished(me))),
                }
            }
            (Some(d), DeploymentCommand::Finish(outcome)) => {
                require_admin(ctx, "finish deployments")?;
                let mut v = Violations::new();
                outcome_valid(&mut v, outcome, ctx.now);
                v.finish()?;
                if d.status.finished() {
                    // The same outcome again (a retried worker step) is a no-op.
                    let same = d
                        .outcome
                        .as_ref()
                        .is_some_and(|o| o.succeeded == outcome.succeeded);
                    return if same {
                        Ok(Vec::new())
                    } else {
                        Err(Rejection::Precondition(Precondition::Finished(me)))
                    };
                }
                Ok(vec![if outcome.succeeded {
                    DeploymentEvent::Succeeded(outcome.clone())
                } else {
                    DeploymentEvent::Failed(outcome.clone())
                }])
            }
        }
    }

    fn evolve(&mut self, event: &DeploymentEvent) {
        match event {
            DeploymentEvent::Requested {
                id,
                target,
                requested_at,
            } => {
                *self = Some(Deployment {
                    id: id.clone(),
                    target: target.clone(),
                    source: "paved".to_owned(),
                    status: DeploymentStatus::Requested,
                    requested_at: *requested_at,
                    started_at: None,
                    finished_at: None,
                    application: None,
                    outcome: None,
                });
            }
            DeploymentEvent::Recorded {
                id,
                target,
                source,
                started_at,
                outcome,
            } => {
                *self = Some(Deployment {
                    id: id.clone(),
                    target: target.clone(),
                    source: source.clone(),
                    status: DeploymentStatus::of(outcome),
                    requested_at: *started_at,
                    started_at: Some(*started_at),
                    finished_at: Some(outcome.finished_at),
                    application: None,
                    outcome: Some(outcome.clone()),
                });
            }
            DeploymentEvent::Started {
                application,
                started_at,
            } => {
                if let Some(d) = self {
                    d.status = DeploymentStatus::Running;
                    d.application = Some(application.clone());
                    d.started_at = Some(*started_at);
                }
            }
            DeploymentEvent::Succeeded(o) | DeploymentEvent::Failed(o) => {
                if let Some(d) = self {
                    d.status = match (d.status, DeploymentStatus::of(o)) {
                        // Never started: it failed before Argo CD was asked.
                        (DeploymentStatus::Requested, DeploymentStatus::Failed) => {
                            DeploymentStatus::NotStarted
                        }
                        (_, s) => s,
                    };
                    d.finished_at = Some(o.finished_at);
                    d.outcome = Some(o.clone());
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&DeploymentEvent> {
        match event {
            Event::Deployment(e) => Some(e),
            _ => None,
        }
    }
}

// ---- changes ----

/// A commit on its way to production: the aggregate id is its SHA. In a
/// monorepo one commit may touch several services' directories: it is one
/// change of each, recorded and shipped per service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub sha: Name,
    /// The services it counts for, each with its account of the change.
    pub services: BTreeMap<Name, ChangeSpec>,
    /// A merged pull request noted before a push said which services the
    /// commit touches: the services recorded later take its account.
    pub pull_request: Option<PullRequestAccount>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSpec {
    pub service: Name,
    pub authored_at: Option<DateTime<Utc>>,
    pub committed_at: DateTime<Utc>,
    pub merged_at: Option<DateTime<Utc>>,
    pub pr_number: u64,
    pub pr_url: String,
    pub author: String,
    pub title: String,
    /// Arrived as history, not as work (see [`is_backfill`]): kept, left out of DORA.
    pub backfill: bool,
}

/// A merged pull request's account of its merge commit, whichever
/// services that commit turns out to touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestAccount {
    pub number: u64,
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub merged_at: Option<DateTime<Utc>>,
    pub author: String,
    pub title: String,
}

impl PullRequestAccount {
    /// The change of `service` as this pull request tells it: counted from
    /// the pull request's creation.
    pub fn for_service(&self, service: &Name) -> ChangeSpec {
        ChangeSpec {
            service: service.clone(),
            authored_at: Some(self.created_at),
            committed_at: self.created_at,
            merged_at: self.merged_at,
            pr_number: self.number,
            pr_url: self.url.clone(),
            author: self.author.clone(),
            title: self.title.clone(),
            backfill: false,
        }
    }
}

/// A pushed commit older than this when it arrives is history (an imported
/// repository, a branch brought back), not a change in flight.
pub const BACKFILL_AGE: Duration = Duration::days(30);

/// Does a pushed commit arrive as history rather than as work? When its
/// push created the branch (a repository's first push, an imported
/// history) or it is older than [`BACKFILL_AGE`] on arrival. Such a change
/// is recorded and shipped like any other, and left out of DORA's lead
/// time, which it would stretch to months or years.
pub fn is_backfill(
    committed_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    branch_created: bool,
) -> bool {
    branch_created || received_at - committed_at > BACKFILL_AGE
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeCommand {
    /// A commit of one service on the way to production. Recorded once per
    /// service; when it was first recorded from a push and now comes as a
    /// merged pull request (GitHub sends both, in either order), the pull
    /// request's account replaces the push's, so the order they arrive in
    /// does not change the result. A commit counts for several services
    /// only when they name one repository (a monorepo); another
    /// repository's service (a fork, a mirror) is refused.
    Record(ChangeSpec),
    /// The merged pull request behind the commit, when which services it
    /// touches is not known from it (a monorepo's pull request: GitHub
    /// lists no files in it). Services recorded from the push, before or
    /// after, take its account. Admins only (the GitHub webhook).
    NotePullRequest(PullRequestAccount),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    Recorded {
        sha: Name,
        spec: ChangeSpec,
    },
    /// The merged pull request behind a change first recorded from a push:
    /// `spec` (from the pull request) replaces what the push said.
    PullRequestLinked {
        sha: Name,
        spec: ChangeSpec,
    },
    /// A merged pull request whose services are not known yet.
    PullRequestNoted {
        sha: Name,
        pull_request: PullRequestAccount,
    },
}

impl ChangeEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Recorded { .. } => "ChangeRecorded",
            Self::PullRequestLinked { .. } => "ChangePullRequestLinked",
            Self::PullRequestNoted { .. } => "ChangePullRequestNoted",
        }
    }

    /// The change of one service as it stands after this event, if the
    /// event is about one.
    pub fn spec(&self) -> Option<&ChangeSpec> {
        match self {
            Self::Recorded { spec, .. } | Self::PullRequestLinked { spec, .. } => Some(spec),
            Self::PullRequestNoted { .. } => None,
        }
    }
}

impl From<ChangeEvent> for Event {
    fn from(e: ChangeEvent) -> Self {
        Event::Change(e)
    }
}

fn validate_change(v: &mut Violations, spec: &ChangeSpec, now: DateTime<Utc>) {
    not_future(v, "committed_at", spec.committed_at, now);
    if let Some(m) = spec.merged_at {
        not_future(v, "merged_at", m, now);
        if m < spec.committed_at {
            v.push("merged_at", "is before committed_at");
        }
    }
    if !spec.pr_url.is_empty() {
        v.url("pr_url", &spec.pr_url);
    }
    v.line("author", &spec.author, 200);
    v.line("title", &spec.title, 500);
}

impl Aggregate for Option<Change> {
    const KIND: AggregateKind = AggregateKind::Change;
    type Command = ChangeCommand;
    type Event = ChangeEvent;

    fn references(&self, command: &ChangeCommand, _: &References) -> Vec<AggregateRef> {
        match command {
            ChangeCommand::Record(spec) => {
                let mut refs = vec![AggregateRef::service(&spec.service)];
                // Whether a commit counts for one more service depends on
                // the repositories of those it counts for already.
                if let Some(c) = self
                    && !c.services.contains_key(&spec.service)
                {
                    refs.extend(c.services.keys().map(AggregateRef::service));
                }
                refs
            }
            ChangeCommand::NotePullRequest(_) => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &ChangeCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<ChangeEvent>, Rejection> {
        let mut v = Violations::new();
        if !is_commit_sha(ctx.id.as_str()) {
            v.push(
                "sha",
                "must be a full 40-character lowercase hex commit SHA",
            );
        }
        let recorded = self.as_ref().map(|c| &c.services);
        let spec = match command {
            ChangeCommand::Record(spec) => spec,
            ChangeCommand::NotePullRequest(pr) => {
                require_admin(ctx, "note pull requests")?;
                validate_change(&mut v, &pr.for_service(ctx.id), ctx.now);
                v.finish()?;
                let mut events = Vec::new();
                if self
                    .as_ref()
                    .and_then(|c| c.pull_request.as_ref())
                    .is_none()
                {
                    events.push(ChangeEvent::PullRequestNoted {
                        sha: ctx.id.clone(),
                        pull_request: pr.clone(),
                    });
                }
                // The services the push recorded it for already.
                for (service, c) in recorded.into_iter().flatten() {
                    if c.pr_number == 0 {
                        events.push(ChangeEvent::PullRequestLinked {
                            sha: ctx.id.clone(),
                            spec: pr.for_service(service),
                        });
                    }
                }
                return Ok(events);
            }
        };
        validate_change(&mut v, spec, ctx.now);
        v.finish()?;
        let service = service_for(ctx, &spec.service)?;
        // A pull request noted before the push: its account wins.
        let noted = self.as_ref().and_then(|c| c.pull_request.as_ref());
        let spec = match noted {
            Some(pr) if spec.pr_number == 0 => pr.for_service(&spec.service),
            _ => spec.clone(),
        };
        match recorded.and_then(|r| r.get(&spec.service)) {
            // The pull request behind a pushed commit: its account wins.
            Some(c) if c.pr_number == 0 && spec.pr_number > 0 => {
                return Ok(vec![ChangeEvent::PullRequestLinked {
                    sha: ctx.id.clone(),
                    spec,
                }]);
            }
            // The same change again (a redelivered webhook, the push after
            // its pull request): nothing new.
            Some(_) => return Ok(Vec::new()),
            None => {}
        }
        let repository = service_repository(&service.spec);
        for other in recorded.into_iter().flat_map(|r| r.keys()) {
            let theirs = ctx
                .refs
                .service(other)
                .and_then(|o| service_repository(&o.spec));
            if repository.is_none() || theirs != repository {
                return Err(Rejection::AlreadyExists(format!(
                    "change {} (recorded for service {other}, of another repository: a commit \
                     counts for several services only within one repository)",
                    ctx.id
                )));
            }
        }
        Ok(vec![ChangeEvent::Recorded {
            sha: ctx.id.clone(),
            spec,
        }])
    }

    fn evolve(&mut self, event: &ChangeEvent) {
        let (ChangeEvent::Recorded { sha, .. }
        | ChangeEvent::PullRequestLinked { sha, .. }
        | ChangeEvent::PullRequestNoted { sha, .. }) = event;
        let change = self.get_or_insert_with(|| Change {
            sha: sha.clone(),
            services: BTreeMap::new(),
            pull_request: None,
        });
        match event {
            ChangeEvent::Recorded { spec, .. } | ChangeEvent::PullRequestLinked { spec, .. } => {
                change.services.insert(spec.service.clone(), spec.clone());
            }
            ChangeEvent::PullRequestNoted { pull_request, .. } => {
                change.pull_request = Some(pull_request.clone());
            }
        }
    }

    fn select(event: &Event) -> Option<&ChangeEvent> {
        match event {
            Event::Change(e) => Some(e),
            _ => None,
        }
    }
}

// ---- incidents ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: Name,
    pub title: String,
    pub services: Vec<Name>,
    /// e.g. `sev1`..`sev4`.
    pub severity: String,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Deployments explicitly linked as the cause.
    pub caused_by: Vec<Name>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentCommand {
    Open {
        title: String,
        services: Vec<Name>,
        severity: String,
        started_at: DateTime<Utc>,
        caused_by: Option<Name>,
    },
    /// The deployment that caused it.
    Link {
        deployment: Name,
    },
    Resolve {
        resolved_at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentEvent {
    Opened {
        id: Name,
        title: String,
        services: Vec<Name>,
        severity: String,
        started_at: DateTime<Utc>,
    },
    Linked {
        deployment: Name,
    },
    Resolved {
        resolved_at: DateTime<Utc>,
    },
}

impl IncidentEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "IncidentOpened",
            Self::Linked { .. } => "IncidentLinked",
            Self::Resolved { .. } => "IncidentResolved",
        }
    }
}

impl From<IncidentEvent> for Event {
    fn from(e: IncidentEvent) -> Self {
        Event::Incident(e)
    }
}

pub const SEVERITIES: [&str; 4] = ["sev1", "sev2", "sev3", "sev4"];

impl Aggregate for Option<Incident> {
    const KIND: AggregateKind = AggregateKind::Incident;
    type Command = IncidentCommand;
    type Event = IncidentEvent;

    fn references(&self, command: &IncidentCommand, _: &References) -> Vec<AggregateRef> {
        let deployment = |d: &Name| AggregateRef {
            kind: AggregateKind::Deployment,
            id: d.clone(),
        };
        let (services, linked) = match (self, command) {
            (
                _,
                IncidentCommand::Open {
                    services,
                    caused_by,
                    ..
                },
            ) => (services.as_slice(), caused_by.as_ref()),
            (Some(i), IncidentCommand::Link { deployment }) => {
                (i.services.as_slice(), Some(deployment))
            }
            (Some(i), IncidentCommand::Resolve { .. }) => (i.services.as_slice(), None),
            (None, _) => (&[][..], None),
        };
        services
            .iter()
            .map(AggregateRef::service)
            .chain(linked.map(deployment))
            .collect()
    }

    fn decide(
        &self,
        command: &IncidentCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<IncidentEvent>, Rejection> {
        let me = format!("incident {:?}", ctx.id.as_str());
        if !ctx.principal.may_write() {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not change incidents: read-only",
                ctx.principal.name
            )));
        }
        match (self, command) {
            (
                existing,
                IncidentCommand::Open {
                    title,
                    services,
                    severity,
                    started_at,
                    caused_by,
                },
            ) => {
                let mut v = Violations::new();
                if title.trim().is_empty() {
                    v.push("title", "is required");
                }
                v.line("title", title, 300);
                if services.is_empty() {
                    v.push("services", "name at least one affected service");
                }
                if !SEVERITIES.contains(&severity.as_str()) {
                    v.push(
                        "severity",
                        format!("must be one of {}", SEVERITIES.join(", ")),
                    );
                }
                not_future(&mut v, "started_at", *started_at, ctx.now);
                v.finish()?;
                for s in services {
                    owned_service(ctx, s)?;
                }
                if existing.is_some() {
                    return Err(Rejection::AlreadyExists(me));
                }
                if let Some(d) = caused_by {
                    caused_by_check(ctx, "caused_by_deployment", d, services)?;
                }
                let mut events = vec![IncidentEvent::Opened {
                    id: ctx.id.clone(),
                    title: title.clone(),
                    services: services.clone(),
                    severity: severity.clone(),
                    started_at: *started_at,
                }];
                if let Some(d) = caused_by {
                    events.push(IncidentEvent::Linked {
                        deployment: d.clone(),
                    });
                }
                Ok(events)
            }
            (None, _) => Err(Rejection::NotFound(me)),
            (Some(i), IncidentCommand::Link { deployment }) => {
                for s in &i.services {
                    owned_service(ctx, s)?;
                }
                if i.caused_by.contains(deployment) {
                    return Ok(Vec::new());
                }
                caused_by_check(ctx, "deployment", deployment, &i.services)?;
                Ok(vec![IncidentEvent::Linked {
                    deployment: deployment.clone(),
                }])
            }
            (Some(i), IncidentCommand::Resolve { resolved_at }) => {
                for s in &i.services {
                    owned_service(ctx, s)?;
                }
                let mut v = Violations::new();
                not_future(&mut v, "resolved_at", *resolved_at, ctx.now);
                if *resolved_at < i.started_at {
                    v.push("resolved_at", "is before the incident started");
                }
                v.finish()?;
                match i.resolved_at {
                    Some(r) if r == *resolved_at => Ok(Vec::new()),
                    Some(_) => Err(Rejection::Precondition(Precondition::Finished(me))),
                    None => Ok(vec![IncidentEvent::Resolved {
                        resolved_at: *resolved_at,
                    }]),
                }
            }
        }
    }

    fn evolve(&mut self, event: &IncidentEvent) {
        match event {
            IncidentEvent::Opened {
                id,
                title,
                services,
                severity,
                started_at,
            } => {
                *self = Some(Incident {
                    id: id.clone(),
                    title: title.clone(),
                    services: services.clone(),
                    severity: severity.clone(),
                    started_at: *started_at,
                    resolved_at: None,
                    caused_by: Vec::new(),
                });
            }
            IncidentEvent::Linked { deployment } => {
                if let Some(i) = self {
                    i.caused_by.push(deployment.clone());
                }
            }
            IncidentEvent::Resolved { resolved_at } => {
                if let Some(i) = self {
                    i.resolved_at = Some(*resolved_at);
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&IncidentEvent> {
        match event {
            Event::Incident(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
