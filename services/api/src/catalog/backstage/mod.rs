//! Backstage descriptor import and export. Kinds Group, System and
//! Component become teams, systems and services; every other kind (API,
//! Resource, Domain, User, Location, a plugin's) is stored as it came
//! (`paved_domain::catalog::Entity`) and exported unchanged.
//!
//! Import makes the catalog match the file for every entity the file names:
//! it validates every document first (errors name the document's index, its
//! name and the field), then issues the same commands a client would, in
//! dependency order: groups (parents first), systems, components, then
//! dependencies. An entity already as described appends nothing, so
//! importing the same file twice appends nothing the second time.
//!
//! Mapping (both directions):
//! - Group: `metadata.name`, `spec.profile.displayName|email`, `spec.parent`,
//!   `spec.members` (user refs); chat channel in annotation `paved.dev/chat-channel`.
//! - System: `metadata.name|title|description`, `spec.owner`.
//! - Component: `metadata.name|description|tags|links|labels|annotations`,
//!   `spec.type|lifecycle|owner|system|dependsOn` (component refs; other
//!   kinds such as `resource:` are not modelled by Paved and are ignored).
//!   Paved fields Backstage lacks travel as annotations: `paved.dev/tier`,
//!   `paved.dev/docs-url`, `paved.dev/repository-url`,
//!   `paved.dev/deprecation-reason`. Without them, the repository URL comes
//!   from `backstage.io/source-location` (`url:` form) or
//!   `github.com/project-slug`, and the docs URL from a link titled "docs".
//!   `paved.dev/*` annotations are not stored as annotations.
//! - SLOs are not part of Backstage descriptors and are left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use paved_domain::catalog::{
    Entity, EntityCommand, ImportCommand, ImportReceipt, ImportResult, Lifecycle, Link,
    RepositoryClaim, RepositoryCommand, Service, ServiceCommand, ServiceSpec, ServiceType,
    SourceLocation, SpecField, System, SystemCommand, TYPED_KINDS, Team, TeamCommand, TeamProfile,
    check_document, claim_id, entity_owner, entity_ref, may_join_system, receipt_id, relations,
    repository_to_claim,
};
use paved_domain::validate::{self, Violations};
use paved_domain::{Aggregate, Context, FieldViolation, Name, Principal, References, Rejection};
use paved_eventlog::{CommandMeta, ExecuteError, Executed, Executor};
use paved_proto::v1 as pb;
use serde_json::json;
use serde_yaml_ng::Value;
use sqlx::PgPool;
use tonic::Status;

use super::dry_run::CatalogCopy;
use crate::error;

mod descriptor;
mod export;
mod plan;

pub(crate) use descriptor::check_flow_depth;
use descriptor::*;
use export::component_doc;
pub use export::{documents, export, push_document};
use plan::*;

/// Commands of one phase in flight at once.
const CONCURRENCY: usize = 64;

fn exec_err(e: ExecuteError) -> Status {
    error::execute(e)
}

/// Current states of many aggregates, fetched concurrently.
async fn states<A: Aggregate>(
    executor: &Executor,
    names: Vec<Name>,
) -> Result<HashMap<Name, A>, Status> {
    futures::stream::iter(names)
        .map(|n| async move {
            let loaded = executor.state::<A>(&n).await.map_err(exec_err)?;
            Ok::<_, Status>((n, loaded.state))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Imports a multi-document Backstage YAML file. The request id is bound to
/// the file by a receipt (aggregate `import`) recorded after the commands of
/// an import that changed something: a retry with the same file answers the
/// original result, another file under the same id is refused on
/// `request_id`. A crash before the receipt leaves the commands done so far;
/// the retry does the rest and records the receipt.
pub async fn import(
    executor: &Executor,
    meta: &CommandMeta,
    yaml: &str,
    dry_run: bool,
) -> Result<pb::ImportBackstageResponse, Status> {
    use sha2::{Digest, Sha256};
    let fingerprint = Sha256::new()
        .chain_update(meta.principal.name.as_bytes())
        .chain_update(b"\n")
        .chain_update(yaml.as_bytes())
        .finalize()
        .to_vec();
    let receipt = receipt_id(&hex::encode(Sha256::digest(meta.command_id.as_bytes())))
        .map_err(error::rejection)?;
    if !dry_run
        && let Some(answer) = receipted(executor, &receipt, &fingerprint, &meta.command_id).await?
    {
        return Ok(answer);
    }
    let response = run_import(executor, meta, yaml, dry_run).await?;
    // Like any command that changes nothing, an import that changed nothing
    // appends nothing (no receipt either).
    if dry_run || response.commands == 0 {
        return Ok(response);
    }
    let record = ImportCommand::Record(ImportReceipt {
        fingerprint: fingerprint.clone(),
        result: ImportResult {
            sequence: response.sequence,
            commands: response.commands,
            events: response.events,
            entities: response.entities,
            unchanged: response.unchanged,
        },
    });
    match executor
        .execute::<Option<ImportReceipt>>(&receipt, &record, meta)
        .await
    {
        Ok(_) => Ok(response),
        // The same import, retried concurrently, recorded its receipt first.
        Err(ExecuteError::RequestIdReused(_)) => {
            receipted(executor, &receipt, &fingerprint, &meta.command_id)
                .await?
                .ok_or_else(|| {
                    error::execute(ExecuteError::RequestIdReused(meta.command_id.clone()))
                })
        }
        Err(e) => Err(exec_err(e)),
    }
}

/// The original answer of an import whose receipt exists: `None` when there
/// is none, `INVALID_ARGUMENT` on `request_id` when it was for another file.
async fn receipted(
    executor: &Executor,
    receipt: &Name,
    fingerprint: &[u8],
    request_id: &str,
) -> Result<Option<pb::ImportBackstageResponse>, Status> {
    let loaded = executor
        .state::<Option<ImportReceipt>>(receipt)
        .await
        .map_err(exec_err)?;
    match loaded.state {
        None => Ok(None),
        Some(r) if r.fingerprint == fingerprint => Ok(Some(pb::ImportBackstageResponse {
            sequence: r.result.sequence,
            commands: r.result.commands,
            events: r.result.events,
            entities: r.result.entities,
            unchanged: r.result.unchanged,
        })),
        Some(_) => Err(error::execute(ExecuteError::RequestIdReused(
            request_id.to_owned(),
        ))),
    }
}

async fn run_import(
    executor: &Executor,
    meta: &CommandMeta,
    yaml: &str,
    dry_run: bool,
) -> Result<pb::ImportBackstageResponse, Status> {
    let mut docs = parse_off_runtime(Arc::from(yaml)).await?;
    // Users' memberOf and groups' members: one membership.
    let joining = memberships(&mut docs);
    let entities =
        (docs.groups.len() + docs.systems.len() + docs.components.len() + docs.entities.len())
            as u32;
    // Users whose memberOf no longer names a team: leaving it.
    let leaving = leavings(executor, &docs).await?;
    let mut wanted = referenced_teams(&docs);
    wanted.extend(joining.iter().map(|(team, _)| team.clone()));
    wanted.extend(leaving.iter().map(|(team, _)| team.clone()));
    wanted.sort();
    wanted.dedup();
    let teams: HashMap<Name, Option<Team>> = states(executor, wanted).await?;
    let systems: HashMap<Name, Option<System>> =
        states(executor, referenced_systems(&docs)).await?;
    let services: HashMap<Name, Option<Service>> =
        states(executor, referenced_services(&docs)).await?;
    // Repositories held by other services and entities the domain refuses:
    // found now, not half-way through.
    let mut copy = CatalogCopy::new(executor);
    let mut conflicts = repository_conflicts(&mut copy, &docs, &services, meta).await?;
    let (entity_steps, entities_unchanged) =
        plan_entities(executor, &docs, meta, &mut conflicts).await?;
    if !conflicts.is_empty() {
        return Err(error::invalid(conflicts));
    }
    let (mut phases, mut unchanged) = plan(&docs, &teams, &systems, &services, &meta.principal)?;
    // Users of the file joining or leaving teams the file does not describe.
    let joins: Vec<Step> = joining
        .into_iter()
        .filter(|(team, user)| {
            teams
                .get(team)
                .and_then(Option::as_ref)
                .is_some_and(|t| !t.members.contains(user))
        })
        .map(|(team, member)| Step::Team(team, TeamCommand::AddMember { member }))
        .chain(
            leaving
                .into_iter()
                .filter(|(team, user)| {
                    teams
                        .get(team)
                        .and_then(Option::as_ref)
                        .is_some_and(|t| t.members.contains(user))
                })
                .map(|(team, member)| Step::Team(team, TeamCommand::RemoveMember { member })),
        )
        .collect();
    phases.extend(serialize_per_aggregate(joins));
    unchanged += entities_unchanged;
    // What the domain would refuse half-way through: found now.
    copy.seed(teams);
    copy.seed(systems);
    copy.seed(services);
    let refused = rehearse(copy, &docs, &phases, meta).await?;
    if !refused.is_empty() {
        return Err(error::invalid(refused));
    }
    if !entity_steps.is_empty() {
        phases.push(entity_steps);
    }
    let mut response = pb::ImportBackstageResponse {
        sequence: 0,
        commands: phases.iter().map(|p| p.len() as u32).sum(),
        events: 0,
        entities,
        unchanged,
    };
    if dry_run {
        return Ok(response);
    }
    for phase in phases {
        let results: Vec<Executed> = futures::stream::iter(phase)
            .map(|step| async move {
                let mut m = meta.clone();
                m.command_id = format!("{}/{}", meta.command_id, step.label());
                m.causation_id = meta.command_id.clone();
                let done = match &step {
                    Step::Team(n, c) => executor.execute::<Option<Team>>(n, c, &m).await,
                    Step::System(n, c) => executor.execute::<Option<System>>(n, c, &m).await,
                    Step::Entity(n, c) => executor.execute::<Option<Entity>>(n, c, &m).await,
                    Step::Service(n, c) => {
                        match crate::catalog::claim_repository(executor, n, c, &m).await {
                            Ok(()) => executor.execute::<Option<Service>>(n, c, &m).await,
                            Err(e) => Err(e),
                        }
                    }
                };
                done.map_err(|e| {
                    let status = exec_err(e);
                    Status::new(
                        status.code(),
                        format!("{}: {}", step.label(), status.message()),
                    )
                })
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        for r in results {
            response.sequence = response.sequence.max(r.sequence);
            response.events += r.events;
        }
    }
    Ok(response)
}
