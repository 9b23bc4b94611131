//! `paved.v1.CatalogService`: commands go through the write path, queries
//! read the catalog projection's tables.

mod backstage;
mod dry_run;
mod queries;

pub(crate) use backstage::check_flow_depth;

use paved_domain::catalog::{
    RepositoryClaim, RepositoryCommand, Service, ServiceCommand, SpecField, System, SystemCommand,
    Team, TeamCommand, claim_id, repository_to_claim,
};
use paved_domain::validate::Violations;
use paved_domain::{Aggregate, Name};
use paved_eventlog::codec::{
    criticality_from_proto, profile_from_proto, slo_from_proto, spec_fields_from_proto,
    spec_from_proto,
};
use paved_eventlog::readmodel::CATALOG;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use paved_proto::v1 as pb;
use pb::catalog_service_server::CatalogService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::{begin, recorded};

/// Imports a Backstage YAML file (one or many documents) as `meta`'s
/// principal, whole or not at all: what `ImportBackstage` does, for the
/// template runner's `catalog:register` (given to the workers by the binary).
pub async fn import_descriptors(
    executor: &Executor,
    meta: &CommandMeta,
    yaml: &str,
) -> Result<pb::ImportBackstageResponse, Status> {
    backstage::import(executor, meta, yaml, false).await
}

/// Most bytes a streamed import takes.
pub const MAX_STREAMED_IMPORT: usize = 256 * 1024 * 1024;
/// About how many bytes of YAML one chunk of a streamed export holds.
const EXPORT_CHUNK: usize = 1024 * 1024;

/// The catalog API. Cheap to clone.
#[derive(Clone)]
pub struct CatalogApi {
    executor: Executor,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
    services: ServiceCache,
}

/// Services answered by `GetService`, each with the catalog's version it
/// was read at and when. An entry is served only while the catalog stays
/// at that version (any catalog change, or a fresh reading of the
/// checkpoints, makes every entry stale) and for at most [`SERVICE_TTL`]
/// (what leaves the checkpoint where it was — a rebuild's swap, an edit by
/// hand — shows within it).
type ServiceCache = std::sync::Arc<
    std::sync::Mutex<lru::LruCache<String, ((u64, u64), std::time::Instant, pb::Service)>>,
>;

/// Services `GetService` keeps answers for (a few MiB).
pub const SERVICE_CACHE: usize = 4096;
/// How long a cached answer may be served at most.
pub const SERVICE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

type CommandResult<T> = Result<Response<T>, Status>;

impl CatalogApi {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        auth: Authenticator,
        freshness: Freshness,
        counters: CommandCounters,
    ) -> Self {
        Self {
            executor,
            pool,
            auth,
            freshness,
            counters,
            services: std::sync::Arc::new(std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(SERVICE_CACHE).expect("not zero"),
            ))),
        }
    }

    /// Reports collected violations, or runs the command.
    async fn execute<A: Aggregate, R: paved_proto::answer::Recorded>(
        &self,
        v: Violations,
        id: Option<Name>,
        command: Option<A::Command>,
        meta: &CommandMeta,
    ) -> CommandResult<R> {
        let done =
            crate::request::execute::<A>(&self.executor, &self.counters, v, id, command, meta)
                .await?;
        Ok(Response::new(recorded(done)))
    }

    /// A service command: the claim of the repository it names first (see
    /// [`claim_repository`]), then the command.
    async fn execute_service<R: paved_proto::answer::Recorded>(
        &self,
        v: Violations,
        id: Option<Name>,
        command: Option<ServiceCommand>,
        meta: &CommandMeta,
    ) -> CommandResult<R> {
        if let (true, Some(id), Some(command)) = (v.is_empty(), &id, &command) {
            claim_repository(&self.executor, id, command, meta)
                .await
                .map_err(error::execute)?;
        }
        self.execute::<Option<Service>, _>(v, id, command, meta)
            .await
    }

    async fn reader<T>(&self, request: &Request<T>, min_sequence: u64) -> Result<(), Status> {
        self.auth.authenticate(request).await?;
        self.freshness.wait_for(CATALOG, min_sequence).await
    }
}

/// Takes, for service `id`, the claim of the repository `command` makes it
/// name, if any: a repository belongs to one live service, and the service's
/// own command checks that it holds the claim. Under the request id with
/// `/claim` appended, so a retry finds it taken already.
pub(crate) async fn claim_repository(
    executor: &Executor,
    id: &Name,
    command: &ServiceCommand,
    meta: &CommandMeta,
) -> Result<(), ExecuteError> {
    let current = match command {
        ServiceCommand::Update { .. } => executor.state::<Option<Service>>(id).await?.state,
        _ => None,
    };
    let Some((claim, command)) = claim_command(current.as_ref(), id, command) else {
        return Ok(());
    };
    let mut claim_meta = meta.clone();
    claim_meta.command_id = format!("{}/claim", meta.command_id);
    claim_meta.expected_version = None;
    executor
        .execute::<Option<RepositoryClaim>>(&claim, &command, &claim_meta)
        .await?;
    Ok(())
}

/// The claim (its id and command) service `id` must hold before `command`
/// runs on it (`current`: its state), if any.
pub(crate) fn claim_command(
    current: Option<&Service>,
    id: &Name,
    command: &ServiceCommand,
) -> Option<(Name, RepositoryCommand)> {
    let location = repository_to_claim(current, command)?;
    let owner = match (command, current) {
        (ServiceCommand::Register { owner, .. }, _) => owner.clone(),
        (_, Some(s)) => s.owner.clone(),
        // Not there: the service's own command says so.
        (_, None) => return None,
    };
    Some((
        claim_id(&location.identity),
        RepositoryCommand::Claim {
            identity: location.identity,
            path: location.path,
            service: id.clone(),
            owner,
        },
    ))
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "CreateTeam"),
        err(level = "info")
    )]
    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> CommandResult<pb::CreateTeamResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let parent = v.optional_name("parent", &r.parent);
        let command = TeamCommand::Create {
            profile: profile_from_proto(r.profile.as_ref()),
            parent,
            members: r.members,
        };
        self.execute::<Option<Team>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "UpdateTeamProfile"),
        err(level = "info")
    )]
    async fn update_team_profile(
        &self,
        request: Request<pb::UpdateTeamProfileRequest>,
    ) -> CommandResult<pb::UpdateTeamProfileResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        if r.profile.is_none() {
            v.push("profile", "is required");
        }
        let command = TeamCommand::UpdateProfile {
            profile: profile_from_proto(r.profile.as_ref()),
        };
        self.execute::<Option<Team>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "AddTeamMember"),
        err(level = "info")
    )]
    async fn add_team_member(
        &self,
        request: Request<pb::AddTeamMemberRequest>,
    ) -> CommandResult<pb::AddTeamMemberResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("team", &r.team);
        let command = TeamCommand::AddMember { member: r.member };
        self.execute::<Option<Team>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RemoveTeamMember"),
        err(level = "info")
    )]
    async fn remove_team_member(
        &self,
        request: Request<pb::RemoveTeamMemberRequest>,
    ) -> CommandResult<pb::RemoveTeamMemberResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("team", &r.team);
        v.member("member", &r.member);
        let command = TeamCommand::RemoveMember { member: r.member };
        self.execute::<Option<Team>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "SetTeamParent"),
        err(level = "info")
    )]
    async fn set_team_parent(
        &self,
        request: Request<pb::SetTeamParentRequest>,
    ) -> CommandResult<pb::SetTeamParentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("team", &r.team);
        let parent = v.optional_name("parent", &r.parent);
        self.execute::<Option<Team>, _>(v, id, Some(TeamCommand::SetParent { parent }), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RetireTeam"),
        err(level = "info")
    )]
    async fn retire_team(
        &self,
        request: Request<pb::RetireTeamRequest>,
    ) -> CommandResult<pb::RetireTeamResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let command = TeamCommand::Retire { reason: r.reason };
        self.execute::<Option<Team>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "CreateSystem"),
        err(level = "info")
    )]
    async fn create_system(
        &self,
        request: Request<pb::CreateSystemRequest>,
    ) -> CommandResult<pb::CreateSystemResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let owner = v.name("owner", &r.owner);
        let command = owner.map(|owner| SystemCommand::Create {
            owner,
            display_name: r.display_name,
            description: r.description,
        });
        self.execute::<Option<System>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "UpdateSystem"),
        err(level = "info")
    )]
    async fn update_system(
        &self,
        request: Request<pb::UpdateSystemRequest>,
    ) -> CommandResult<pb::UpdateSystemResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let command = SystemCommand::Update {
            display_name: r.display_name,
            description: r.description,
        };
        self.execute::<Option<System>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "TransferSystemOwnership"),
        err(level = "info")
    )]
    async fn transfer_system_ownership(
        &self,
        request: Request<pb::TransferSystemOwnershipRequest>,
    ) -> CommandResult<pb::TransferSystemOwnershipResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let to = v.name("new_owner", &r.new_owner);
        let command = to.map(|to| SystemCommand::TransferOwnership { to });
        self.execute::<Option<System>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RetireSystem"),
        err(level = "info")
    )]
    async fn retire_system(
        &self,
        request: Request<pb::RetireSystemRequest>,
    ) -> CommandResult<pb::RetireSystemResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let command = SystemCommand::Retire { reason: r.reason };
        self.execute::<Option<System>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RegisterService"),
        err(level = "info")
    )]
    async fn register_service(
        &self,
        request: Request<pb::RegisterServiceRequest>,
    ) -> CommandResult<pb::RegisterServiceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let owner = v.name("owner", &r.owner);
        let spec = spec_from_proto(&mut v, "spec.", r.spec.as_ref());
        let command = owner
            .zip(spec)
            .map(|(owner, spec)| ServiceCommand::Register { owner, spec });
        self.execute_service(v, id, command, &meta).await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "UpdateService"),
        err(level = "info")
    )]
    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> CommandResult<pb::UpdateServiceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.push(
                "update_mask",
                "must name at least one ServiceSpec field to replace",
            );
        }
        let mut fields = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            match SpecField::parse(path.strip_prefix("spec.").unwrap_or(path)) {
                Some(f) => fields.push(f),
                None => v.push(
                    format!("update_mask.paths[{i}]"),
                    format!("unknown ServiceSpec field {path:?}"),
                ),
            }
        }
        let mut spec = paved_domain::catalog::ServiceSpec::new(
            paved_domain::catalog::ServiceType::Service,
            paved_domain::catalog::Lifecycle::Experimental,
        );
        match &r.spec {
            Some(p) => spec_fields_from_proto(&mut v, "spec.", p, &fields, &mut spec),
            None => v.push("spec", "is required"),
        }
        let command = ServiceCommand::Update { spec, fields };
        self.execute_service(v, id, Some(command), &meta).await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "TransferServiceOwnership"),
        err(level = "info")
    )]
    async fn transfer_service_ownership(
        &self,
        request: Request<pb::TransferServiceOwnershipRequest>,
    ) -> CommandResult<pb::TransferServiceOwnershipResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let to = v.name("new_owner", &r.new_owner);
        let command = to.map(|to| ServiceCommand::TransferOwnership { to });
        self.execute::<Option<Service>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "DeprecateService"),
        err(level = "info")
    )]
    async fn deprecate_service(
        &self,
        request: Request<pb::DeprecateServiceRequest>,
    ) -> CommandResult<pb::DeprecateServiceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let command = ServiceCommand::Deprecate { reason: r.reason };
        self.execute::<Option<Service>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RetireService"),
        err(level = "info")
    )]
    async fn retire_service(
        &self,
        request: Request<pb::RetireServiceRequest>,
    ) -> CommandResult<pb::RetireServiceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("name", &r.name);
        let command = ServiceCommand::Retire { reason: r.reason };
        self.execute::<Option<Service>, _>(v, id, Some(command), &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "AddDependency"),
        err(level = "info")
    )]
    async fn add_dependency(
        &self,
        request: Request<pb::AddDependencyRequest>,
    ) -> CommandResult<pb::AddDependencyResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("service", &r.service);
        let on = v.name("depends_on", &r.depends_on);
        let criticality = criticality_from_proto(&mut v, "criticality", r.criticality);
        let command = on
            .zip(criticality)
            .map(|(on, criticality)| ServiceCommand::AddDependency { on, criticality });
        self.execute::<Option<Service>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RemoveDependency"),
        err(level = "info")
    )]
    async fn remove_dependency(
        &self,
        request: Request<pb::RemoveDependencyRequest>,
    ) -> CommandResult<pb::RemoveDependencyResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("service", &r.service);
        let on = v.name("depends_on", &r.depends_on);
        let command = on.map(|on| ServiceCommand::RemoveDependency { on });
        self.execute::<Option<Service>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(name = "handle", skip_all, fields(rpc = "SetSlo"), err(level = "info"))]
    async fn set_slo(
        &self,
        request: Request<pb::SetSloRequest>,
    ) -> CommandResult<pb::SetSloResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("service", &r.service);
        let slo = slo_from_proto(&mut v, "slo.", r.slo.as_ref());
        let command = slo.map(|slo| ServiceCommand::SetSlo { slo });
        self.execute::<Option<Service>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RemoveSlo"),
        err(level = "info")
    )]
    async fn remove_slo(
        &self,
        request: Request<pb::RemoveSloRequest>,
    ) -> CommandResult<pb::RemoveSloResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("service", &r.service);
        let name = v.name("slo_name", &r.slo_name);
        let command = name.map(|name| ServiceCommand::RemoveSlo { name });
        self.execute::<Option<Service>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ImportBackstage"),
        err(level = "info")
    )]
    async fn import_backstage(
        &self,
        request: Request<pb::ImportBackstageRequest>,
    ) -> Result<Response<pb::ImportBackstageResponse>, Status> {
        let (meta, r, v) = begin(&self.auth, request).await?;
        if !v.is_empty() {
            return Err(error::invalid(v.into_vec()));
        }
        backstage::import(&self.executor, &meta, &r.yaml, r.dry_run)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ExportBackstage"),
        err(level = "info")
    )]
    async fn export_backstage(
        &self,
        request: Request<pb::ExportBackstageRequest>,
    ) -> Result<Response<pb::ExportBackstageResponse>, Status> {
        let r = request.get_ref();
        self.reader(&request, r.min_sequence).await?;
        backstage::export(&self.pool, r.include_retired)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ImportBackstageStream"),
        err(level = "info")
    )]
    async fn import_backstage_stream(
        &self,
        request: Request<tonic::Streaming<pb::ImportBackstageStreamRequest>>,
    ) -> Result<Response<pb::ImportBackstageStreamResponse>, Status> {
        let (mut meta, mut stream) = crate::request::begin_stream(&self.auth, request).await?;
        let mut bytes: Vec<u8> = Vec::new();
        let mut dry_run = false;
        let mut first = true;
        while let Some(chunk) = stream.message().await? {
            if first {
                meta.command_id = chunk.request_id.clone();
                dry_run = chunk.dry_run;
                first = false;
            } else if !chunk.request_id.is_empty() && chunk.request_id != meta.command_id {
                return Err(error::invalid_field(
                    "request_id",
                    "changed in the middle of the stream",
                ));
            }
            if bytes.len() + chunk.yaml_chunk.len() > MAX_STREAMED_IMPORT {
                return Err(Status::resource_exhausted(format!(
                    "an import takes at most {MAX_STREAMED_IMPORT} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk.yaml_chunk);
        }
        let mut v = Violations::new();
        crate::request::check_request_id(&mut v, &meta.command_id);
        v.finish().map_err(error::rejection)?;
        if meta.correlation_id.is_empty() {
            meta.correlation_id = meta.command_id.clone();
        }
        let yaml = String::from_utf8(bytes).map_err(|e| {
            error::invalid_field(
                "yaml_chunk",
                format!(
                    "is not UTF-8: the byte at offset {} starts an invalid sequence",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let r = backstage::import(&self.executor, &meta, &yaml, dry_run).await?;
        Ok(Response::new(pb::ImportBackstageStreamResponse {
            sequence: r.sequence,
            commands: r.commands,
            events: r.events,
            entities: r.entities,
            unchanged: r.unchanged,
            bytes: yaml.len() as u64,
        }))
    }

    type ExportBackstageStreamStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::ExportBackstageStreamResponse, Status>>;

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ExportBackstageStream"),
        err(level = "info")
    )]
    async fn export_backstage_stream(
        &self,
        request: Request<pb::ExportBackstageStreamRequest>,
    ) -> Result<Response<Self::ExportBackstageStreamStream>, Status> {
        let r = request.get_ref();
        self.reader(&request, r.min_sequence).await?;
        let docs = backstage::documents(&self.pool, r.include_retired).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // Rendering is CPU work: off the async threads, a chunk at a time.
        tokio::task::spawn_blocking(move || {
            let mut chunk = String::new();
            let mut entities = 0u32;
            for d in &docs {
                if let Err(s) = backstage::push_document(&mut chunk, d) {
                    // Whether or not the client is still there, this is the end.
                    tx.blocking_send(Err(s)).ok();
                    return;
                }
                entities += 1;
                if chunk.len() >= EXPORT_CHUNK {
                    let yaml = std::mem::take(&mut chunk);
                    let part = pb::ExportBackstageStreamResponse { yaml, entities };
                    if tx.blocking_send(Ok(part)).is_err() {
                        return; // the client went away
                    }
                    entities = 0;
                }
            }
            if entities > 0 {
                // The last chunk: a client gone by now has nothing to miss.
                tx.blocking_send(Ok(pb::ExportBackstageStreamResponse {
                    yaml: chunk,
                    entities,
                }))
                .ok();
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetTeam"),
        err(level = "info")
    )]
    async fn get_team(
        &self,
        request: Request<pb::GetTeamRequest>,
    ) -> Result<Response<pb::GetTeamResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::get_team(&self.pool, &request.get_ref().name)
            .await
            .map(|team| Response::new(pb::GetTeamResponse { team: Some(team) }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListTeams"),
        err(level = "info")
    )]
    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::list_teams(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetSystem"),
        err(level = "info")
    )]
    async fn get_system(
        &self,
        request: Request<pb::GetSystemRequest>,
    ) -> Result<Response<pb::GetSystemResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::get_system(&self.pool, &request.get_ref().name)
            .await
            .map(|system| {
                Response::new(pb::GetSystemResponse {
                    system: Some(system),
                })
            })
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetEntity"),
        err(level = "info")
    )]
    async fn get_entity(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::GetEntityResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::get_entity(&self.pool, &request.get_ref().r#ref)
            .await
            .map(|entity| {
                Response::new(pb::GetEntityResponse {
                    entity: Some(entity),
                })
            })
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListEntities"),
        err(level = "info")
    )]
    async fn list_entities(
        &self,
        request: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::list_entities(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListSystems"),
        err(level = "info")
    )]
    async fn list_systems(
        &self,
        request: Request<pb::ListSystemsRequest>,
    ) -> Result<Response<pb::ListSystemsResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::list_systems(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetService"),
        err(level = "info")
    )]
    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::GetServiceResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        let name = &request.get_ref().name;
        // Taken before the query: the row read is at least this new.
        let version = self.freshness.version(CATALOG);
        {
            let mut cache = self.services.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, read, service)) = cache.get(name)
                && *at == version
                && read.elapsed() < SERVICE_TTL
            {
                return Ok(Response::new(pb::GetServiceResponse {
                    service: Some(service.clone()),
                }));
            }
        }
        let read = std::time::Instant::now();
        let service = queries::get_service(&self.pool, name).await?;
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(name.clone(), (version, read, service.clone()));
        Ok(Response::new(pb::GetServiceResponse {
            service: Some(service),
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListServices"),
        err(level = "info")
    )]
    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::list_services(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetDependencyGraph"),
        err(level = "info")
    )]
    async fn get_dependency_graph(
        &self,
        request: Request<pb::GetDependencyGraphRequest>,
    ) -> Result<Response<pb::GetDependencyGraphResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::dependency_graph(&self.pool, request.get_ref())
            .await
            .map(|graph| Response::new(pb::GetDependencyGraphResponse { graph: Some(graph) }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetCatalogHealth"),
        err(level = "info")
    )]
    async fn get_catalog_health(
        &self,
        request: Request<pb::GetCatalogHealthRequest>,
    ) -> Result<Response<pb::GetCatalogHealthResponse>, Status> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        queries::catalog_health(&self.pool, &request.get_ref().team)
            .await
            .map(|health| {
                Response::new(pb::GetCatalogHealthResponse {
                    health: Some(health),
                })
            })
    }
}
