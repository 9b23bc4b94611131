//! Provisioning: a team asks for a namespace, a PostgreSQL database or a
//! Redis cache in an environment; a plan shows the files that change in
//! the GitOps repository; the policy says who approves; the GitOps writer
//! commits; Argo CD applies.
//!
//! One aggregate per team, its **tenancy** (`paved.provisioning.tenancy.<team>`):
//! it holds every resource of the team and every request about them, so a
//! quota is one optimistic-concurrency check — two requests at the limit
//! are decided one after the other on the same subject, and the second sees
//! the first.
//!
//! Every request follows one state machine, whatever its kind:
//!
//! ```text
//! Requested → Planned → Approved → Applying → Applied → Verified
//!                 ↘ Rejected             ↘ Failed (from any open state)
//! ```
//!
//! A change of a resource is a new request of the same resource; a
//! decommission is a request whose plan only deletes. A plan of a creation
//! or a change never deletes a file: an empty or broken render is a
//! failure, never a deletion.
//!
//! - [`policy`]: approvals, quotas and tiers (the rules of `PAVED_PROVISIONING_CONFIG`).
//! - [`render`]: the pure renderer, resource → files of the GitOps repository.

pub mod policy;
pub mod render;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::validate::{MAX_REASON, Violations};

pub use policy::{Approval, Approver, Policy, Quotas, Rules, Tier};

/// Most files one plan may write or delete.
pub const MAX_PLAN_FILES: usize = 256;
/// Most bytes of one planned file.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most bytes of a plan's diff.
pub const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// What can be provisioned. A kind is a renderer ([`render`]) plus its
/// place in the [`Policy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// The team's namespace in one environment, with its RBAC, quota,
    /// limits and network policies.
    Namespace,
    /// A PostgreSQL database of a service (a Terraform module call).
    Postgres,
    /// A Redis cache of a service (a Terraform module call).
    Redis,
    /// The Argo CD Application of a service in an environment (into the
    /// team's namespace, within the team's AppProject).
    #[serde(rename = "argocd-app")]
    ArgoApp,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] =
        [Self::Namespace, Self::Postgres, Self::Redis, Self::ArgoApp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::ArgoApp => "argocd-app",
        }
    }

    /// Does it belong to a service (rather than to the team)?
    pub fn of_service(self) -> bool {
        !matches!(self, Self::Namespace)
    }

    /// Does it have a size (a namespace tier, a database size)?
    pub fn sized(self) -> bool {
        !matches!(self, Self::ArgoApp)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does to its resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Change,
    Decommission,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Change => "change",
            Self::Decommission => "decommission",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::Change, Self::Decommission]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// One resource as requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    pub kind: ResourceKind,
    pub environment: Name,
    /// The service a database belongs to (none for a namespace).
    pub service: Option<Name>,
    /// The namespace's tier or the database's size (see [`Rules`]).
    pub size: String,
}

impl ResourceSpec {
    /// The resource's id within its team: `namespace-<env>`,
    /// `postgres-<env>-<service>`, `redis-<env>-<service>`.
    pub fn id(&self) -> String {
        match &self.service {
            None => format!("{}-{}", self.kind, self.environment),
            Some(s) => format!("{}-{}-{s}", self.kind, self.environment),
        }
    }
}

/// The id of request `number` of `team`, as users see it: `payments/3`.
pub fn request_id(team: &str, number: u64) -> String {
    format!("{team}/{number}")
}

/// Splits a request id into its team and number.
pub fn parse_request_id(id: &str) -> Option<(Name, u64)> {
    let (team, number) = id.split_once('/')?;
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    Some((Name::parse(team).ok()?, number))
}

/// One file of a plan: its new content, or `None` when the plan deletes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: String,
    pub content: Option<String>,
}

/// What applying a request changes in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The commit of the repository's branch the plan was made against.
    pub base: String,
    /// The files that change (written or deleted), by path.
    pub files: Vec<PlannedFile>,
    /// The unified diff from `base` to the plan.
    pub diff: String,
    /// Managed files someone else changed since Paved last wrote them
    /// (the plan puts them back).
    pub drift: Vec<String>,
}

impl Plan {
    pub fn deletions(&self) -> usize {
        self.files.iter().filter(|f| f.content.is_none()).count()
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestState {
    Requested,
    Planned,
    Approved,
    Rejected,
    Applying,
    Applied,
    Verified,
    Failed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Planned => "planned",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Verified => "verified",
            Self::Failed => "failed",
        }
    }

    /// Is the request still on its way (the resource is busy)?
    pub fn open(self) -> bool {
        matches!(
            self,
            Self::Requested | Self::Planned | Self::Approved | Self::Applying
        )
    }
}

/// One request of a team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub number: u64,
    pub spec: ResourceSpec,
    pub action: Action,
    pub requested_by: String,
    pub state: RequestState,
    pub plan: Option<Plan>,
    pub approval: Option<Approval>,
    pub approved_by: Option<String>,
    pub commit: Option<String>,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
}

/// Where a resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceStatus {
    /// Its creation was requested and has not been applied yet.
    Pending,
    /// Its files are in the repository.
    Live,
    /// Its files were removed.
    Decommissioned,
    /// Its creation never landed (rejected or failed).
    Abandoned,
}

impl ResourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Live => "live",
            Self::Decommissioned => "decommissioned",
            Self::Abandoned => "abandoned",
        }
    }

    /// Does it count against the team's quotas?
    fn counts(self) -> bool {
        matches!(self, Self::Pending | Self::Live)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub spec: ResourceSpec,
    pub status: ResourceStatus,
    /// The request working on it, if one is open.
    pub open: Option<u64>,
    /// The last commit that applied it, and the request it applied.
    pub commit: Option<String>,
    pub applied_by: Option<u64>,
}

/// A team's tenancy: its resources, and every request about them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenancy {
    pub resources: BTreeMap<String, Resource>,
    pub requests: BTreeMap<u64, Request>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProvisioningCommand {
    /// Ask for `action` on `spec` for `team` (the tenancy's own), decided
    /// by `rules` (the configuration's).
    Request {
        team: Name,
        spec: ResourceSpec,
        action: Action,
        rules: Box<Rules>,
    },
    /// The GitOps writer's plan of request `number`; `policy` says who approves it.
    Plan {
        number: u64,
        plan: Plan,
        policy: Policy,
    },
    Approve {
        number: u64,
        reason: String,
    },
    Reject {
        number: u64,
        reason: String,
    },
    /// The GitOps writer starts committing.
    StartApply {
        number: u64,
    },
    /// The plan's commit is on the branch.
    RecordApplied {
        number: u64,
        commit: String,
    },
    /// Argo CD reports the change synced and healthy.
    Verify {
        number: u64,
    },
    Fail {
        number: u64,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvisioningEvent {
    Requested {
        number: u64,
        spec: ResourceSpec,
        action: Action,
        requested_by: String,
    },
    Planned {
        number: u64,
        plan: Plan,
        approval: Approval,
    },
    Approved {
        number: u64,
        by: String,
        reason: String,
        automatic: bool,
    },
    Rejected {
        number: u64,
        by: String,
        reason: String,
    },
    ApplyStarted {
        number: u64,
    },
    Applied {
        number: u64,
        commit: String,
    },
    Verified {
        number: u64,
    },
    Failed {
        number: u64,
        reason: String,
    },
}

impl ProvisioningEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Requested { .. } => "ProvisionRequested",
            Self::Planned { .. } => "ProvisionPlanned",
            Self::Approved { .. } => "ProvisionApproved",
            Self::Rejected { .. } => "ProvisionRejected",
            Self::ApplyStarted { .. } => "ProvisionApplyStarted",
            Self::Applied { .. } => "ProvisionApplied",
            Self::Verified { .. } => "ProvisionVerified",
            Self::Failed { .. } => "ProvisionFailed",
        }
    }

    /// The request it is about.
    pub fn number(&self) -> u64 {
        match self {
            Self::Requested { number, .. }
            | Self::Planned { number, .. }
            | Self::Approved { number, .. }
            | Self::Rejected { number, .. }
            | Self::ApplyStarted { number }
            | Self::Applied { number, .. }
            | Self::Verified { number }
            | Self::Failed { number, .. } => *number,
        }
    }
}

impl From<ProvisioningEvent> for Event {
    fn from(e: ProvisioningEvent) -> Self {
        Event::Provisioning(e)
    }
}

fn state_error(team: &Name, r: &Request, why: &str) -> Rejection {
    Rejection::Precondition(Precondition::State {
        what: format!("request {}", request_id(team.as_str(), r.number)),
        state: r.state.as_str().to_owned(),
        why: why.to_owned(),
    })
}

fn worker_only(ctx: &Context<'_>, what: &str) -> Result<(), Rejection> {
    crate::catalog::require_admin(ctx, what)
}

impl Tenancy {
    fn request(&self, team: &Name, number: u64) -> Result<&Request, Rejection> {
        self.requests.get(&number).ok_or_else(|| {
            Rejection::NotFound(format!("request {}", request_id(team.as_str(), number)))
        })
    }

    /// The requests' next number.
    pub fn next_number(&self) -> u64 {
        self.requests.keys().next_back().map_or(1, |n| n + 1)
    }

    fn decide_request(
        &self,
        spec: &ResourceSpec,
        action: Action,
        rules: &Rules,
        ctx: &Context<'_>,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        let team = ctx.id;
        if !ctx.principal.acts_for(team) {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not request resources for team {team}: members of the team and admins only",
                ctx.principal.name
            )));
        }
        let mut v = Violations::new();
        match (spec.kind, &spec.service) {
            (ResourceKind::Namespace, Some(_)) => v.push(
                "service",
                "a namespace belongs to the team, not to a service",
            ),
            (k, None) if k.of_service() => v.push("service", format!("a {k} belongs to a service")),
            _ => {}
        }
        let sized = match spec.kind {
            ResourceKind::Namespace => rules.tiers.contains_key(&spec.size),
            _ => rules.sizes.contains_key(&spec.size),
        };
        if !sized && action != Action::Decommission && spec.kind.sized() {
            let known: Vec<&str> = match spec.kind {
                ResourceKind::Namespace => rules.tiers.keys().map(String::as_str).collect(),
                _ => rules.sizes.keys().map(String::as_str).collect(),
            };
            v.push(
                "size",
                format!("unknown size {:?} (one of {})", spec.size, known.join(", ")),
            );
        }
        v.finish()?;
        match ctx.refs.team(team) {
            None => {
                return Err(Rejection::Precondition(Precondition::MissingReference(
                    AggregateRef::team(team),
                )));
            }
            Some(t) if t.retired.is_some() => {
                return Err(Rejection::Precondition(Precondition::RetiredReference(
                    AggregateRef::team(team),
                )));
            }
            Some(_) => {}
        }
        if let Some(service) = &spec.service {
            match ctx.refs.service(service) {
                None => {
                    return Err(Rejection::Precondition(Precondition::BadReference {
                        field: "service".into(),
                        reference: AggregateRef::service(service),
                        why: String::new(),
                    }));
                }
                Some(s) if s.owner != *team => {
                    return Err(Rejection::Precondition(Precondition::BadReference {
                        field: "service".into(),
                        reference: AggregateRef::service(service),
                        why: format!("is owned by team {}, not {team}", s.owner),
                    }));
                }
                Some(s) if s.retired.is_some() && action != Action::Decommission => {
                    return Err(Rejection::Precondition(Precondition::RetiredReference(
                        AggregateRef::service(service),
                    )));
                }
                Some(_) => {}
            }
        }
        let id = spec.id();
        let existing = self.resources.get(&id);
        if let Some(open) = existing.and_then(|r| r.open) {
            let r = &self.requests[&open];
            return Err(state_error(
                team,
                r,
                &format!("{id} has this request open; wait for it, or reject it"),
            ));
        }
        let live = existing.filter(|r| r.status == ResourceStatus::Live);
        match (action, live) {
            (Action::Create, Some(_)) => {
                return Err(Rejection::AlreadyExists(format!(
                    "resource {id} of team {team} (change it, or decommission it first)"
                )));
            }
            (Action::Change | Action::Decommission, None) => {
                return Err(Rejection::NotFound(format!(
                    "live resource {id} of team {team}"
                )));
            }
            _ => {}
        }
        if spec.kind.of_service() && action == Action::Create {
            let namespace = format!("{}-{}", ResourceKind::Namespace, spec.environment);
            if !self
                .resources
                .get(&namespace)
                .is_some_and(|r| r.status.counts())
            {
                return Err(Rejection::Precondition(Precondition::BadReference {
                    field: "environment".into(),
                    reference: AggregateRef::team(team),
                    why: format!(
                        "has no namespace in {} yet: the {} goes there (request the namespace first)",
                        spec.environment, spec.kind
                    ),
                }));
            }
        }
        if action != Action::Decommission {
            self.check_quota(team, spec, rules)?;
        }
        let spec = match (action, live) {
            // A decommission removes what is there, whatever size it was.
            (Action::Decommission, Some(r)) => r.spec.clone(),
            _ => spec.clone(),
        };
        Ok(vec![ProvisioningEvent::Requested {
            number: self.next_number(),
            spec,
            action,
            requested_by: ctx.principal.name.clone(),
        }])
    }

    /// Would the team stay within its quotas with `spec` in place of what
    /// it has under that id?
    fn check_quota(
        &self,
        team: &Name,
        spec: &ResourceSpec,
        rules: &Rules,
    ) -> Result<(), Rejection> {
        let id = spec.id();
        let others = self
            .resources
            .iter()
            .filter(|(rid, r)| **rid != id && r.status.counts())
            .map(|(_, r)| &r.spec);
        let quota = |why: String| {
            Err(Rejection::Precondition(Precondition::Quota {
                team: team.to_string(),
                why,
            }))
        };
        if spec.kind == ResourceKind::ArgoApp {
            return Ok(());
        }
        if spec.kind.is_database() {
            let held = others
                .filter(|s| s.kind.is_database() && s.environment == spec.environment)
                .count();
            let limit = rules.quotas.databases_per_environment as usize;
            if held + 1 > limit {
                return quota(format!(
                    "it holds {held} database(s) in {} and may hold {limit}",
                    spec.environment
                ));
            }
            return Ok(());
        }
        let tier = |s: &ResourceSpec| rules.tiers.get(&s.size).copied();
        let (mut cpu, mut memory) = (0u64, 0u64);
        for s in others.filter(|s| s.kind == ResourceKind::Namespace) {
            if let Some(t) = tier(s) {
                cpu += t.cpu_millis;
                memory += t.memory_mib;
            }
        }
        let new = tier(spec).unwrap_or(Tier {
            cpu_millis: 0,
            memory_mib: 0,
            pods: 0,
        });
        if cpu + new.cpu_millis > rules.quotas.cpu_millis {
            return quota(format!(
                "its namespaces would request {}m CPU, more than its {}m",
                cpu + new.cpu_millis,
                rules.quotas.cpu_millis
            ));
        }
        if memory + new.memory_mib > rules.quotas.memory_mib {
            return quota(format!(
                "its namespaces would request {} MiB of memory, more than its {} MiB",
                memory + new.memory_mib,
                rules.quotas.memory_mib
            ));
        }
        Ok(())
    }

    fn decide_plan(
        &self,
        number: u64,
        plan: &Plan,
        policy: &Policy,
        ctx: &Context<'_>,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        worker_only(ctx, "record provisioning plans")?;
        let team = ctx.id;
        let r = self.request(team, number)?;
        match r.state {
            RequestState::Requested | RequestState::Applying => {}
            RequestState::Planned | RequestState::Approved if r.plan.as_ref() == Some(plan) => {
                return Ok(Vec::new());
            }
            _ => {
                return Err(state_error(
                    team,
                    r,
                    "only a requested or applying request is planned",
                ));
            }
        }
        let mut v = Violations::new();
        if plan.files.len() > MAX_PLAN_FILES {
            v.push("plan.files", format!("at most {MAX_PLAN_FILES} files"));
        }
        let mut paths = std::collections::BTreeSet::new();
        for (i, f) in plan.files.iter().enumerate() {
            if !safe_path(&f.path) {
                v.push(
                    format!("plan.files[{i}].path"),
                    "must be a relative path of plain segments (no `..`, no leading `/`)",
                );
            }
            if !paths.insert(f.path.as_str()) {
                v.push(format!("plan.files[{i}].path"), "is listed twice");
            }
            if f.content.as_ref().is_some_and(|c| c.len() > MAX_FILE_BYTES) {
                v.push(
                    format!("plan.files[{i}].content"),
                    format!("at most {MAX_FILE_BYTES} bytes"),
                );
            }
            match (r.action, &f.content) {
                (Action::Decommission, Some(_)) => v.push(
                    format!("plan.files[{i}]"),
                    "a decommission only deletes files",
                ),
                (Action::Create | Action::Change, None) => v.push(
                    format!("plan.files[{i}]"),
                    "a plan of a creation or a change never deletes a file",
                ),
                _ => {}
            }
        }
        if plan.diff.len() > MAX_DIFF_BYTES {
            v.push("plan.diff", format!("at most {MAX_DIFF_BYTES} bytes"));
        }
        v.finish()?;
        if plan.files.is_empty() && r.action != Action::Change {
            return Err(state_error(
                team,
                r,
                "the plan changes nothing: an empty render is a failure, never a deletion",
            ));
        }
        let approval = policy.approval(&r.spec, r.action, plan.deletions());
        let mut events = vec![ProvisioningEvent::Planned {
            number,
            plan: plan.clone(),
            approval,
        }];
        if approval.approver == Approver::Automatic {
            events.push(ProvisioningEvent::Approved {
                number,
                by: ctx.principal.name.clone(),
                reason: "approved by policy".into(),
                automatic: true,
            });
        }
        Ok(events)
    }

    /// May the principal approve (or reject) `r`?
    fn may_approve(&self, r: &Request, ctx: &Context<'_>, verb: &str) -> Result<(), Rejection> {
        let team = ctx.id;
        let approval = r.approval.unwrap_or(Approval {
            approver: Approver::Team,
            self_approval: false,
        });
        let allowed = match approval.approver {
            Approver::Admin => ctx.principal.is_admin(),
            Approver::Team | Approver::Automatic => ctx.principal.acts_for(team),
        };
        if !allowed {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not {verb} request {}: it needs {}",
                ctx.principal.name,
                request_id(team.as_str(), r.number),
                match approval.approver {
                    Approver::Admin => "an admin".to_owned(),
                    _ => format!("a member of team {team} or an admin"),
                }
            )));
        }
        Ok(())
    }

    fn decide_approve(
        &self,
        number: u64,
        reason: &str,
        ctx: &Context<'_>,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        let team = ctx.id;
        let r = self.request(team, number)?;
        let mut v = Violations::new();
        v.reason("reason", reason);
        v.finish()?;
        if r.state != RequestState::Planned {
            return Err(state_error(team, r, "only a planned request is approved"));
        }
        self.may_approve(r, ctx, "approve")?;
        let self_approval = r.approval.is_some_and(|a| a.self_approval);
        if r.requested_by == ctx.principal.name && !self_approval {
            return Err(Rejection::PermissionDenied(format!(
                "{} requested {} and may not approve it: the policy wants someone else",
                ctx.principal.name,
                request_id(team.as_str(), number)
            )));
        }
        Ok(vec![ProvisioningEvent::Approved {
            number,
            by: ctx.principal.name.clone(),
            reason: reason.to_owned(),
            automatic: false,
        }])
    }

    fn decide_reject(
        &self,
        number: u64,
        reason: &str,
        ctx: &Context<'_>,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        let team = ctx.id;
        let r = self.request(team, number)?;
        let mut v = Violations::new();
        v.reason("reason", reason);
        if reason.trim().is_empty() {
            v.push("reason", "say why it is rejected");
        }
        v.finish()?;
        if !matches!(r.state, RequestState::Requested | RequestState::Planned) {
            return Err(state_error(
                team,
                r,
                "only a request not yet approved is rejected",
            ));
        }
        // The requester may withdraw their own request.
        if r.requested_by != ctx.principal.name {
            self.may_approve(r, ctx, "reject")?;
        }
        Ok(vec![ProvisioningEvent::Rejected {
            number,
            by: ctx.principal.name.clone(),
            reason: reason.to_owned(),
        }])
    }
}

/// A relative path of plain segments.
fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 512
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with(".git"))
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

impl Aggregate for Tenancy {
    const KIND: AggregateKind = AggregateKind::Tenancy;
    type Command = ProvisioningCommand;
    type Event = ProvisioningEvent;

    fn references(&self, command: &ProvisioningCommand, _loaded: &References) -> Vec<AggregateRef> {
        match command {
            ProvisioningCommand::Request { team, spec, .. } => {
                std::iter::once(AggregateRef::team(team))
                    .chain(spec.service.iter().map(AggregateRef::service))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &ProvisioningCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        let team = ctx.id;
        match command {
            ProvisioningCommand::Request {
                team: named,
                spec,
                action,
                rules,
            } => {
                if named != team {
                    return Err(Rejection::invalid(
                        "team",
                        format!("is {named}, but the request is addressed to team {team}"),
                    ));
                }
                self.decide_request(spec, *action, rules, ctx)
            }
            ProvisioningCommand::Plan {
                number,
                plan,
                policy,
            } => self.decide_plan(*number, plan, policy, ctx),
            ProvisioningCommand::Approve { number, reason } => {
                self.decide_approve(*number, reason, ctx)
            }
            ProvisioningCommand::Reject { number, reason } => {
                self.decide_reject(*number, reason, ctx)
            }
            ProvisioningCommand::StartApply { number } => {
                worker_only(ctx, "apply provisioning plans")?;
                let r = self.request(team, *number)?;
                match r.state {
                    RequestState::Approved => {
                        Ok(vec![ProvisioningEvent::ApplyStarted { number: *number }])
                    }
                    RequestState::Applying => Ok(Vec::new()),
                    _ => Err(state_error(team, r, "only an approved request is applied")),
                }
            }
            ProvisioningCommand::RecordApplied { number, commit } => {
                worker_only(ctx, "record applied plans")?;
                let r = self.request(team, *number)?;
                let mut v = Violations::new();
                if commit.len() < 7
                    || commit.len() > 64
                    || !commit.chars().all(|c| c.is_ascii_hexdigit())
                {
                    v.push("commit", "must be a Git commit id (hex)");
                }
                v.finish()?;
                match r.state {
                    RequestState::Applying => Ok(vec![ProvisioningEvent::Applied {
                        number: *number,
                        commit: commit.clone(),
                    }]),
                    RequestState::Applied | RequestState::Verified
                        if r.commit.as_deref() == Some(commit.as_str()) =>
                    {
                        Ok(Vec::new())
                    }
                    _ => Err(state_error(team, r, "only an applying request is applied")),
                }
            }
            ProvisioningCommand::Verify { number } => {
                worker_only(ctx, "verify applied plans")?;
                let r = self.request(team, *number)?;
                match r.state {
                    RequestState::Applied => {
                        Ok(vec![ProvisioningEvent::Verified { number: *number }])
                    }
                    RequestState::Verified => Ok(Vec::new()),
                    _ => Err(state_error(team, r, "only an applied request is verified")),
                }
            }
            ProvisioningCommand::Fail { number, reason } => {
                worker_only(ctx, "fail provisioning requests")?;
                let r = self.request(team, *number)?;
                let mut v = Violations::new();
                v.text("reason", reason, MAX_REASON);
                v.finish()?;
                match r.state {
                    s if s.open() || s == RequestState::Applied => {
                        Ok(vec![ProvisioningEvent::Failed {
                            number: *number,
                            reason: reason.clone(),
                        }])
                    }
                    RequestState::Failed => Ok(Vec::new()),
                    _ => Err(state_error(team, r, "it has finished")),
                }
            }
        }
    }

    fn evolve(&mut self, event: &ProvisioningEvent) {
        let number = event.number();
        if let ProvisioningEvent::Requested {
            spec,
            action,
            requested_by,
            ..
        } = event
        {
            let id = spec.id();
            let resource = self.resources.entry(id).or_insert_with(|| Resource {
                spec: spec.clone(),
                status: ResourceStatus::Pending,
                open: None,
                commit: None,
                applied_by: None,
            });
            if *action == Action::Create {
                resource.spec = spec.clone();
                resource.status = ResourceStatus::Pending;
            }
            resource.open = Some(number);
            self.requests.insert(
                number,
                Request {
                    number,
                    spec: spec.clone(),
                    action: *action,
                    requested_by: requested_by.clone(),
                    state: RequestState::Requested,
                    plan: None,
                    approval: None,
                    approved_by: None,
                    commit: None,
                    reason: None,
                },
            );
            return;
        }
        let Some(r) = self.requests.get_mut(&number) else {
            return;
        };
        let resource = self.resources.get_mut(&r.spec.id());
        match event {
            ProvisioningEvent::Requested { .. } => {}
            ProvisioningEvent::Planned { plan, approval, .. } => {
                r.state = RequestState::Planned;
                r.plan = Some(plan.clone());
                r.approval = Some(*approval);
                r.approved_by = None;
            }
            ProvisioningEvent::Approved { by, .. } => {
                r.state = RequestState::Approved;
                r.approved_by = Some(by.clone());
            }
            ProvisioningEvent::ApplyStarted { .. } => r.state = RequestState::Applying,
            ProvisioningEvent::Applied { commit, .. } => {
                r.state = RequestState::Applied;
                r.commit = Some(commit.clone());
                if let Some(res) = resource {
                    res.open = None;
                    res.commit = Some(commit.clone());
                    res.applied_by = Some(number);
                    match r.action {
                        Action::Decommission => res.status = ResourceStatus::Decommissioned,
                        Action::Create | Action::Change => {
                            res.status = ResourceStatus::Live;
                            res.spec = r.spec.clone();
                        }
                    }
                }
            }
            ProvisioningEvent::Verified { .. } => r.state = RequestState::Verified,
            ProvisioningEvent::Rejected { reason, .. }
            | ProvisioningEvent::Failed { reason, .. } => {
                let was_applied = r.state == RequestState::Applied;
                r.state = if matches!(event, ProvisioningEvent::Rejected { .. }) {
                    RequestState::Rejected
                } else {
                    RequestState::Failed
                };
                r.reason = Some(reason.clone());
                if let Some(res) = resource {
                    if res.open == Some(number) {
                        res.open = None;
                    }
                    // A creation that never landed holds nothing.
                    if r.action == Action::Create
                        && !was_applied
                        && res.status == ResourceStatus::Pending
                    {
                        res.status = ResourceStatus::Abandoned;
                    }
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&ProvisioningEvent> {
        match event {
            Event::Provisioning(e) => Some(e),
            _ => None,
        }
    }
}
