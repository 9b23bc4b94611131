//! The service catalog: teams (Backstage Group), systems (System) and services
//! (Component). Each is an aggregate whose id is its DNS-label name. Receipts
//! of Backstage imports live beside them (`import`).
//!
//! Who may change what: admins anything; a member of team T what T owns (T's
//! profile and members, systems and services whose owner is T); readers nothing.
//! Creating, re-parenting and retiring teams is for admins. A service joins a
//! system only by someone who acts for the system's owner too
//! ([`may_join_system`]): a system's owner decides what is in it.

mod entity;
mod import;
mod kinds;
mod repository;
mod service;
mod system;
mod team;

pub use entity::{
    Entity, EntityCommand, EntityEvent, EntityRef, MAX_DOCUMENT_BYTES, Relation, TYPED_KINDS,
    check_document, check_kind, check_name, check_namespace, entity_owner, entity_ref, inverse,
    relations,
};
pub use import::{ImportCommand, ImportEvent, ImportReceipt, ImportResult, receipt_id};
pub use kinds::{
    API_VERSIONS, ApiSpec, DomainSpec, KindSpec, LocationSpec, Presence, ResourceSpec, Text,
    UserProfile, UserSpec,
};
pub use repository::{
    CLAIM_GRACE, GITHUB_SLUG_ANNOTATION, Holder, RepositoryClaim, RepositoryCommand,
    RepositoryEvent, SOURCE_LOCATION_ANNOTATION, SourceLocation, claim_id, claim_ref,
    repository_identity, service_repository, service_source, touches,
};
pub use service::{
    Criticality, Lifecycle, Link, Objective, Service, ServiceCommand, ServiceEvent, ServiceSpec,
    ServiceType, Slo, SpecField, repository_to_claim,
};
pub use system::{System, SystemCommand, SystemEvent};
pub use team::{Team, TeamCommand, TeamEvent, TeamProfile};

use crate::aggregate::{AggregateRef, Context, References};
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};

/// Entities that can be retired (tombstoned) and then refuse every change.
trait Retirable {
    fn retired(&self) -> bool;
}

/// The aggregate's state if it exists and is not retired.
fn live<T: Retirable>(state: &Option<T>, me: AggregateRef) -> Result<&T, Rejection> {
    match state {
        None => Err(Rejection::NotFound(me.to_string())),
        Some(s) if s.retired() => Err(Rejection::Precondition(Precondition::Retired(me))),
        Some(s) => Ok(s),
    }
}

/// A referenced team that must exist and not be retired.
pub(crate) fn live_team<'r>(refs: &'r References, id: &Name) -> Result<&'r Team, Rejection> {
    referenced(refs.team(id), AggregateRef::team(id))
}

/// A service a dependency names: live, or not in the catalog yet (shown as
/// missing until it arrives, as Backstage does); a retired one is refused.
fn dependency_target(refs: &References, id: &Name) -> Result<(), Rejection> {
    match refs.service(id) {
        Some(s) if s.retired() => Err(Rejection::Precondition(Precondition::RetiredReference(
            AggregateRef::service(id),
        ))),
        _ => Ok(()),
    }
}

/// A referenced team or system that may not be in the catalog yet:
/// Backstage takes such a reference and shows it as missing until the
/// entity arrives, so the order of imports never matters. Ownership still
/// decides who may: a reference that dangles is taken from admins only
/// (nobody else acts for a team that does not exist, or joins a system
/// nobody owns yet). A retired one is refused, whoever asks.
fn pending<'r, T: Retirable>(
    state: Option<&'r T>,
    r: AggregateRef,
    ctx: &Context<'_>,
) -> Result<Option<&'r T>, Rejection> {
    match state {
        Some(s) if s.retired() => Err(Rejection::Precondition(Precondition::RetiredReference(r))),
        Some(s) => Ok(Some(s)),
        None if ctx.principal.is_admin() => Ok(None),
        None => Err(Rejection::Precondition(Precondition::MissingReference(r))),
    }
}

/// See [`pending`].
fn pending_team<'r>(ctx: &Context<'r>, id: &Name) -> Result<Option<&'r Team>, Rejection> {
    pending(ctx.refs.team(id), AggregateRef::team(id), ctx)
}

/// See [`pending`].
fn pending_system<'r>(ctx: &Context<'r>, id: &Name) -> Result<Option<&'r System>, Rejection> {
    pending(ctx.refs.system(id), AggregateRef::system(id), ctx)
}

fn referenced<T: Retirable>(state: Option<&T>, r: AggregateRef) -> Result<&T, Rejection> {
    match state {
        None => Err(Rejection::Precondition(Precondition::MissingReference(r))),
        Some(s) if s.retired() => Err(Rejection::Precondition(Precondition::RetiredReference(r))),
        Some(s) => Ok(s),
    }
}

/// May `principal` put a service into system `system` (owned by `owner`)?
/// The one rule, used by the service aggregate and by the Backstage import's
/// up-front checks.
pub fn may_join_system(
    principal: &crate::Principal,
    system: &Name,
    owner: &Name,
) -> Result<(), Rejection> {
    if principal.acts_for(owner) {
        Ok(())
    } else {
        Err(Rejection::PermissionDenied(format!(
            "{} may not add services to system {:?}, owned by team {:?}",
            principal.name,
            system.as_str(),
            owner.as_str()
        )))
    }
}

/// The principal must act for `owner` (admin, or member of that team).
fn require_acts_for(ctx: &Context<'_>, owner: &Name, what: &AggregateRef) -> Result<(), Rejection> {
    if ctx.principal.acts_for(owner) {
        Ok(())
    } else {
        Err(Rejection::PermissionDenied(format!(
            "{} may not change {what}, owned by team {:?}",
            ctx.principal.name,
            owner.as_str()
        )))
    }
}

pub(crate) fn require_admin(ctx: &Context<'_>, action: &str) -> Result<(), Rejection> {
    if ctx.principal.is_admin() {
        Ok(())
    } else {
        Err(Rejection::PermissionDenied(format!(
            "{} may not {action}: admins only",
            ctx.principal.name
        )))
    }
}

#[cfg(test)]
mod tests;
