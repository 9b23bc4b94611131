//! Services (Backstage kind Component): spec, ownership, dependencies, SLOs.

use std::collections::BTreeMap;

use super::repository::{SourceLocation, claim_ref, holds, service_source};
use super::{
    Retirable, dependency_target, live, may_join_system, pending_system, pending_team,
    require_acts_for,
};
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::Rejection;
use crate::validate::{self, Violations};

pub const MAX_DEPENDENCIES: usize = 256;
pub const MAX_SLOS: usize = 32;
pub const MAX_TIER: u8 = 5;

/// Longest free `spec.type` or `spec.lifecycle`.
pub const MAX_FREE_TEXT: usize = 63;

/// Backstage's `spec.type`: any string (as in Backstage), the well-known
/// values named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServiceType {
    Service,
    Website,
    Library,
    Worker,
    /// Any other value, as given (`documentation`, `grpc-service`, …).
    Other(String),
}

impl ServiceType {
    /// The well-known values (suggested by the CLI, in the proto's enum).
    pub const ALL: [ServiceType; 4] = [Self::Service, Self::Website, Self::Library, Self::Worker];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Service => "service",
            Self::Website => "website",
            Self::Library => "library",
            Self::Worker => "worker",
            Self::Other(s) => s,
        }
    }

    /// A well-known value, or any other as given; `None` for an empty one.
    pub fn parse(s: &str) -> Option<Self> {
        known_or_other(Self::ALL, s, Self::as_str, Self::Other)
    }
}

/// Backstage's `spec.lifecycle`: any string (as in Backstage), the
/// well-known values named; `deprecated` is what `DeprecateService` sets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    Experimental,
    Production,
    Deprecated,
    /// Any other value, as given (`beta`, `sunset`, …).
    Other(String),
}

impl Lifecycle {
    /// The well-known values (suggested by the CLI, in the proto's enum).
    pub const ALL: [Lifecycle; 3] = [Self::Experimental, Self::Production, Self::Deprecated];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Experimental => "experimental",
            Self::Production => "production",
            Self::Deprecated => "deprecated",
            Self::Other(s) => s,
        }
    }

    /// A well-known value, or any other as given; `None` for an empty one.
    pub fn parse(s: &str) -> Option<Self> {
        known_or_other(Self::ALL, s, Self::as_str, Self::Other)
    }
}

/// The value of `known` spelled `s`, else `other(s)`; `None` for "".
fn known_or_other<T, const N: usize>(
    known: [T; N],
    s: &str,
    name: fn(&T) -> &str,
    other: fn(String) -> T,
) -> Option<T> {
    if s.is_empty() {
        return None;
    }
    Some(
        known
            .into_iter()
            .find(|t| name(t) == s)
            .unwrap_or_else(|| other(s.to_owned())),
    )
}

/// A free `spec.type` or `spec.lifecycle`: one line of at most
/// [`MAX_FREE_TEXT`] characters, without leading or trailing blanks.
fn free_text(v: &mut Violations, field: &str, value: &str) {
    if value.trim() != value || value.is_empty() {
        v.push(field, "must not be empty or start or end with blanks");
    } else if value.chars().count() > MAX_FREE_TEXT {
        v.push(field, format!("must be at most {MAX_FREE_TEXT} characters"));
    } else if value.chars().any(char::is_control) {
        v.push(field, "must not hold control characters");
    }
}

/// How badly a service suffers when a dependency fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Criticality {
    Low,
    Medium,
    High,
}

impl Criticality {
    pub const ALL: [Criticality; 3] = [Self::Low, Self::Medium, Self::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub title: String,
}

/// The descriptive fields of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub kind: ServiceType,
    pub lifecycle: Lifecycle,
    pub system: Option<Name>,
    pub description: String,
    /// 1 (most critical) ..= 5.
    pub tier: Option<u8>,
    pub repository_url: String,
    pub docs_url: String,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub links: Vec<Link>,
}

impl ServiceSpec {
    /// A spec with the required fields and nothing else.
    pub fn new(kind: ServiceType, lifecycle: Lifecycle) -> Self {
        Self {
            kind,
            lifecycle,
            system: None,
            description: String::new(),
            tier: None,
            repository_url: String::new(),
            docs_url: String::new(),
            tags: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            links: Vec::new(),
        }
    }

    /// Checks every free-form field; paths are prefixed with `prefix` (e.g. `spec.`).
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        if let ServiceType::Other(t) = &self.kind {
            free_text(v, &format!("{prefix}type"), t);
        }
        if let Lifecycle::Other(l) = &self.lifecycle {
            free_text(v, &format!("{prefix}lifecycle"), l);
        }
        v.text(
            &format!("{prefix}description"),
            &self.description,
            validate::MAX_DESCRIPTION,
        );
        if let Some(tier) = self.tier
            && !(1..=MAX_TIER).contains(&tier)
        {
            v.push(
                format!("{prefix}tier"),
                format!("must be 1..={MAX_TIER} (0 for none)"),
            );
        }
        v.url(&format!("{prefix}repository_url"), &self.repository_url);
        v.url(&format!("{prefix}docs_url"), &self.docs_url);
        v.tags(&format!("{prefix}tags"), &self.tags);
        v.key_values(
            &format!("{prefix}labels"),
            &self.labels,
            validate::MAX_LABEL_VALUE,
            true,
        );
        v.key_values(
            &format!("{prefix}annotations"),
            &self.annotations,
            validate::MAX_ANNOTATION_VALUE,
            false,
        );
        if self.links.len() > validate::MAX_LINKS {
            v.push(
                format!("{prefix}links"),
                format!("at most {} links", validate::MAX_LINKS),
            );
        }
        for (i, link) in self.links.iter().enumerate() {
            if link.url.is_empty() {
                v.push(format!("{prefix}links[{i}].url"), "is required");
            }
            v.url(&format!("{prefix}links[{i}].url"), &link.url);
            v.line(
                &format!("{prefix}links[{i}].title"),
                &link.title,
                validate::MAX_DISPLAY_NAME,
            );
        }
    }
}

/// A field of [`ServiceSpec`], as named in an update mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpecField {
    Type,
    Lifecycle,
    System,
    Description,
    Tier,
    RepositoryUrl,
    DocsUrl,
    Tags,
    Labels,
    Annotations,
    Links,
}

impl SpecField {
    pub const ALL: [SpecField; 11] = [
        Self::Type,
        Self::Lifecycle,
        Self::System,
        Self::Description,
        Self::Tier,
        Self::RepositoryUrl,
        Self::DocsUrl,
        Self::Tags,
        Self::Labels,
        Self::Annotations,
        Self::Links,
    ];

    /// The proto field name (`paved.v1.ServiceSpec`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Type => "type",
            Self::Lifecycle => "lifecycle",
            Self::System => "system",
            Self::Description => "description",
            Self::Tier => "tier",
            Self::RepositoryUrl => "repository_url",
            Self::DocsUrl => "docs_url",
            Self::Tags => "tags",
            Self::Labels => "labels",
            Self::Annotations => "annotations",
            Self::Links => "links",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Copies this field from `from` into `to`.
    pub fn copy(self, from: &ServiceSpec, to: &mut ServiceSpec) {
        match self {
            Self::Type => to.kind = from.kind.clone(),
            Self::Lifecycle => to.lifecycle = from.lifecycle.clone(),
            Self::System => to.system.clone_from(&from.system),
            Self::Description => to.description.clone_from(&from.description),
            Self::Tier => to.tier = from.tier,
            Self::RepositoryUrl => to.repository_url.clone_from(&from.repository_url),
            Self::DocsUrl => to.docs_url.clone_from(&from.docs_url),
            Self::Tags => to.tags.clone_from(&from.tags),
            Self::Labels => to.labels.clone_from(&from.labels),
            Self::Annotations => to.annotations.clone_from(&from.annotations),
            Self::Links => to.links.clone_from(&from.links),
        }
    }

    /// Does this field differ between `a` and `b`?
    pub fn differs(self, a: &ServiceSpec, b: &ServiceSpec) -> bool {
        let mut copy = a.clone();
        self.copy(b, &mut copy);
        &copy != a
    }
}

/// What a service promises, first-class catalog data.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub name: Name,
    pub objective: Objective,
    pub window_days: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Share of good requests, 0 < target < 100.
    Availability { target_percent: f64 },
    /// The `percentile` of latency stays under `threshold_ms`.
    Latency { percentile: f64, threshold_ms: u32 },
}

impl Slo {
    pub const DEFAULT_WINDOW_DAYS: u32 = 28;
    pub const MAX_WINDOW_DAYS: u32 = 365;
    pub const MAX_THRESHOLD_MS: u32 = 3_600_000;

    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        let open_percent = |x: f64| x.is_finite() && x > 0.0 && x < 100.0;
        match self.objective {
            Objective::Availability { target_percent } => {
                if !open_percent(target_percent) {
                    v.push(
                        format!("{prefix}availability.target_percent"),
                        "must be greater than 0 and less than 100",
                    );
                }
            }
            Objective::Latency {
                percentile,
                threshold_ms,
            } => {
                if !open_percent(percentile) {
                    v.push(
                        format!("{prefix}latency.percentile"),
                        "must be greater than 0 and less than 100",
                    );
                }
                if threshold_ms == 0 || threshold_ms > Self::MAX_THRESHOLD_MS {
                    v.push(
                        format!("{prefix}latency.threshold_ms"),
                        format!("must be 1..={}", Self::MAX_THRESHOLD_MS),
                    );
                }
            }
        }
        if self.window_days == 0 || self.window_days > Self::MAX_WINDOW_DAYS {
            v.push(
                format!("{prefix}window_days"),
                format!("must be 1..={}", Self::MAX_WINDOW_DAYS),
            );
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: Name,
    pub owner: Name,
    pub spec: ServiceSpec,
    /// Why it was deprecated, while its lifecycle is `deprecated`.
    pub deprecation: Option<String>,
    pub retired: Option<String>,
    /// Services this one depends on (upstream), with an optional criticality.
    pub dependencies: BTreeMap<Name, Option<Criticality>>,
    pub slos: BTreeMap<Name, Slo>,
}

impl Retirable for Service {
    fn retired(&self) -> bool {
        self.retired.is_some()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceCommand {
    Register {
        owner: Name,
        spec: ServiceSpec,
    },
    /// Replace the listed fields of the spec with those of `spec`.
    Update {
        spec: ServiceSpec,
        fields: Vec<SpecField>,
    },
    TransferOwnership {
        to: Name,
    },
    Deprecate {
        reason: String,
    },
    Retire {
        reason: String,
    },
    AddDependency {
        on: Name,
        criticality: Option<Criticality>,
    },
    RemoveDependency {
        on: Name,
    },
    SetSlo {
        slo: Slo,
    },
    RemoveSlo {
        name: Name,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceEvent {
    Registered {
        name: Name,
        owner: Name,
        spec: ServiceSpec,
    },
    /// The fields listed changed to their values in `spec`; the others did not change.
    Updated {
        spec: ServiceSpec,
        fields: Vec<SpecField>,
    },
    OwnershipTransferred {
        from: Name,
        to: Name,
    },
    Deprecated {
        reason: String,
    },
    Retired {
        reason: String,
    },
    DependencyAdded {
        on: Name,
        criticality: Option<Criticality>,
    },
    DependencyRemoved {
        on: Name,
    },
    SloSet {
        slo: Slo,
    },
    SloRemoved {
        name: Name,
    },
}

impl ServiceEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ServiceEvent::Registered { .. } => "ServiceRegistered",
            ServiceEvent::Updated { .. } => "ServiceUpdated",
            ServiceEvent::OwnershipTransferred { .. } => "ServiceOwnershipTransferred",
            ServiceEvent::Deprecated { .. } => "ServiceDeprecated",
            ServiceEvent::Retired { .. } => "ServiceRetired",
            ServiceEvent::DependencyAdded { .. } => "DependencyAdded",
            ServiceEvent::DependencyRemoved { .. } => "DependencyRemoved",
            ServiceEvent::SloSet { .. } => "SloSet",
            ServiceEvent::SloRemoved { .. } => "SloRemoved",
        }
    }
}

/// The repository and path `command` makes the service name, which it must
/// hold the claim of first: a registration's, or an update's when it names
/// another one than before (a service keeps what it named before claims
/// existed).
pub fn repository_to_claim(
    current: Option<&Service>,
    command: &ServiceCommand,
) -> Option<SourceLocation> {
    match (current, command) {
        (_, ServiceCommand::Register { spec, .. }) => service_source(spec),
        (Some(s), ServiceCommand::Update { spec, fields }) => new_repository(&s.spec, spec, fields),
        _ => None,
    }
}

fn new_repository(
    current: &ServiceSpec,
    spec: &ServiceSpec,
    fields: &[SpecField],
) -> Option<SourceLocation> {
    let mut next = current.clone();
    for field in fields {
        field.copy(spec, &mut next);
    }
    let after = service_source(&next)?;
    (service_source(current).as_ref() != Some(&after)).then_some(after)
}

impl Aggregate for Option<Service> {
    const KIND: AggregateKind = AggregateKind::Service;
    type Command = ServiceCommand;
    type Event = ServiceEvent;

    fn references(&self, command: &ServiceCommand, _loaded: &References) -> Vec<AggregateRef> {
        match command {
            ServiceCommand::Register { owner, spec } => {
                let mut refs = vec![AggregateRef::team(owner)];
                refs.extend(spec.system.iter().map(AggregateRef::system));
                refs.extend(service_source(spec).map(|l| claim_ref(&l.identity)));
                refs
            }
            ServiceCommand::Update { spec, fields } => {
                let mut refs = Vec::new();
                if fields.contains(&SpecField::System) {
                    refs.extend(spec.system.iter().map(AggregateRef::system));
                }
                if let Some(s) = self
                    && let Some(location) = new_repository(&s.spec, spec, fields)
                {
                    refs.push(claim_ref(&location.identity));
                }
                refs
            }
            ServiceCommand::TransferOwnership { to } => vec![AggregateRef::team(to)],
            ServiceCommand::AddDependency { on, .. } => vec![AggregateRef::service(on)],
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &ServiceCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<ServiceEvent>, Rejection> {
        let me = AggregateRef::service(ctx.id);
        if let ServiceCommand::Register { owner, spec } = command {
            require_acts_for(ctx, owner, &me)?;
            let mut v = Violations::new();
            spec.validate(&mut v, "spec.");
            v.finish()?;
            if self.is_some() {
                return Err(Rejection::AlreadyExists(me.to_string()));
            }
            pending_team(ctx, owner)?;
            if let Some(system) = &spec.system
                && let Some(s) = pending_system(ctx, system)?
            {
                may_join_system(ctx.principal, system, &s.owner)?;
            }
            if let Some(location) = service_source(spec) {
                holds(ctx.refs, &location, ctx.id)?;
            }
            return Ok(vec![ServiceEvent::Registered {
                name: ctx.id.clone(),
                owner: owner.clone(),
                spec: spec.clone(),
            }]);
        }

        let service = live(self, me.clone())?;
        require_acts_for(ctx, &service.owner, &me)?;
        match command {
            ServiceCommand::Register { .. } => unreachable!("handled above"),
            ServiceCommand::Update { spec, fields } => {
                if fields.is_empty() {
                    return Err(Rejection::invalid(
                        "update_mask",
                        "must name at least one field",
                    ));
                }
                let mut next = service.spec.clone();
                for field in fields {
                    field.copy(spec, &mut next);
                }
                let mut v = Violations::new();
                next.validate(&mut v, "spec.");
                v.finish()?;
                let mut changed: Vec<SpecField> = fields
                    .iter()
                    .copied()
                    .filter(|f| f.differs(&service.spec, &next))
                    .collect();
                changed.sort();
                changed.dedup();
                if changed.is_empty() {
                    return Ok(Vec::new());
                }
                if changed.contains(&SpecField::System)
                    && let Some(system) = &next.system
                    && let Some(s) = pending_system(ctx, system)?
                {
                    may_join_system(ctx.principal, system, &s.owner)?;
                }
                if let Some(location) = new_repository(&service.spec, spec, fields) {
                    holds(ctx.refs, &location, ctx.id)?;
                }
                Ok(vec![ServiceEvent::Updated {
                    spec: next,
                    fields: changed,
                }])
            }
            ServiceCommand::TransferOwnership { to } => {
                if &service.owner == to {
                    return Ok(Vec::new());
                }
                pending_team(ctx, to)?;
                Ok(vec![ServiceEvent::OwnershipTransferred {
                    from: service.owner.clone(),
                    to: to.clone(),
                }])
            }
            ServiceCommand::Deprecate { reason } => {
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                if service.deprecation.as_ref() == Some(reason) {
                    return Ok(Vec::new());
                }
                Ok(vec![ServiceEvent::Deprecated {
                    reason: reason.clone(),
                }])
            }
            ServiceCommand::Retire { reason } => {
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                Ok(vec![ServiceEvent::Retired {
                    reason: reason.clone(),
                }])
            }
            ServiceCommand::AddDependency { on, criticality } => {
                if on == ctx.id {
                    return Err(Rejection::invalid(
                        "depends_on",
                        "a service cannot depend on itself",
                    ));
                }
                if service.dependencies.contains_key(on) {
                    return Err(Rejection::AlreadyExists(format!(
                        "dependency of {me} on {}",
                        AggregateRef::service(on)
                    )));
                }
                if service.dependencies.len() >= MAX_DEPENDENCIES {
                    return Err(Rejection::invalid(
                        "depends_on",
                        format!("a service has at most {MAX_DEPENDENCIES} dependencies"),
                    ));
                }
                dependency_target(ctx.refs, on)?;
                Ok(vec![ServiceEvent::DependencyAdded {
                    on: on.clone(),
                    criticality: *criticality,
                }])
            }
            ServiceCommand::RemoveDependency { on } => {
                if !service.dependencies.contains_key(on) {
                    return Err(Rejection::NotFound(format!(
                        "dependency of {me} on {}",
                        AggregateRef::service(on)
                    )));
                }
                Ok(vec![ServiceEvent::DependencyRemoved { on: on.clone() }])
            }
            ServiceCommand::SetSlo { slo } => {
                let mut v = Violations::new();
                slo.validate(&mut v, "slo.");
                v.finish()?;
                match service.slos.get(&slo.name) {
                    Some(existing) if existing == slo => return Ok(Vec::new()),
                    None if service.slos.len() >= MAX_SLOS => {
                        return Err(Rejection::invalid(
                            "slo.name",
                            format!("a service has at most {MAX_SLOS} SLOs"),
                        ));
                    }
                    _ => {}
                }
                Ok(vec![ServiceEvent::SloSet { slo: slo.clone() }])
            }
            ServiceCommand::RemoveSlo { name } => {
                if !service.slos.contains_key(name) {
                    return Err(Rejection::NotFound(format!(
                        "SLO {:?} of {me}",
                        name.as_str()
                    )));
                }
                Ok(vec![ServiceEvent::SloRemoved { name: name.clone() }])
            }
        }
    }

    fn evolve(&mut self, event: &ServiceEvent) {
        if let ServiceEvent::Registered { name, owner, spec } = event {
            *self = Some(Service {
                name: name.clone(),
                owner: owner.clone(),
                spec: spec.clone(),
                deprecation: None,
                retired: None,
                dependencies: BTreeMap::new(),
                slos: BTreeMap::new(),
            });
            return;
        }
        let Some(service) = self else { return };
        match event {
            ServiceEvent::Registered { .. } => {}
            ServiceEvent::Updated { spec, fields } => {
                for field in fields {
                    field.copy(spec, &mut service.spec);
                }
                if service.spec.lifecycle != Lifecycle::Deprecated {
                    service.deprecation = None;
                }
            }
            ServiceEvent::OwnershipTransferred { to, .. } => service.owner = to.clone(),
            ServiceEvent::Deprecated { reason } => {
                service.spec.lifecycle = Lifecycle::Deprecated;
                service.deprecation = Some(reason.clone());
            }
            ServiceEvent::Retired { reason } => service.retired = Some(reason.clone()),
            ServiceEvent::DependencyAdded { on, criticality } => {
                service.dependencies.insert(on.clone(), *criticality);
            }
            ServiceEvent::DependencyRemoved { on } => {
                service.dependencies.remove(on);
            }
            ServiceEvent::SloSet { slo } => {
                service.slos.insert(slo.name.clone(), slo.clone());
            }
            ServiceEvent::SloRemoved { name } => {
                service.slos.remove(name);
            }
        }
    }

    fn select(event: &Event) -> Option<&ServiceEvent> {
        match event {
            Event::Service(e) => Some(e),
            _ => None,
        }
    }
}
