//! `paved.v1.ProvisioningService`: requests, approvals and rejections go to
//! the team's tenancy through the write path; reads come from the
//! provisioning projection's tables.

use chrono::{DateTime, Utc};
use paved_domain::Name;
use paved_domain::provisioning::{
    Action, ProvisioningCommand, RequestState, ResourceKind, ResourceSpec, Rules, Tenancy,
    parse_request_id, request_id,
};
use paved_domain::validate::Violations;
use paved_eventlog::codec::timestamp;
use paved_eventlog::readmodel::PROVISIONING;
use paved_eventlog::{CommandMeta, Executor};
use paved_proto::v1 as pb;
use pb::provisioning_service_server::ProvisioningService;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::begin;

type Reply<T> = Result<Response<T>, Status>;

/// Most requests one list returns.
const MAX_PAGE: u32 = 500;

#[derive(Clone)]
pub struct ProvisioningApi {
    executor: Executor,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
    rules: std::sync::Arc<Rules>,
}

impl ProvisioningApi {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        auth: Authenticator,
        freshness: Freshness,
        counters: CommandCounters,
        rules: Rules,
    ) -> Self {
        Self {
            executor,
            pool,
            auth,
            freshness,
            counters,
            rules: std::sync::Arc::new(rules),
        }
    }

    async fn run(
        &self,
        v: Violations,
        team: Option<Name>,
        number: Option<u64>,
        command: Option<ProvisioningCommand>,
        meta: &CommandMeta,
    ) -> Result<Done, Status> {
        let done = crate::request::execute::<Tenancy>(
            &self.executor,
            &self.counters,
            v,
            team.clone(),
            command,
            meta,
        )
        .await?;
        // A new request's number is the one its commit carries (also when
        // this is a retry answered from the first commit).
        let number = match number {
            Some(n) => Some(n),
            None => self.number_in(done.sequence).await?,
        };
        Ok(Done {
            id: team
                .zip(number)
                .map(|(t, n)| request_id(t.as_str(), n))
                .unwrap_or_default(),
            sequence: done.sequence,
            events: done.events,
        })
    }

    /// The request number in the commit at `sequence`.
    async fn number_in(&self, sequence: u64) -> Result<Option<u64>, Status> {
        let Some(m) = self
            .executor
            .log()
            .get(sequence)
            .await
            .map_err(|e| error::log_unavailable(&e))?
        else {
            return Ok(None);
        };
        let commit = paved_eventlog::codec::decode_commit(&m.payload).map_err(|e| {
            tracing::error!(sequence, error = %e, "own commit does not decode");
            Status::internal("internal error")
        })?;
        Ok(commit.events.iter().find_map(|e| match e {
            paved_domain::Event::Provisioning(e) => Some(e.number()),
            _ => None,
        }))
    }

    /// The owner of `service`, from the log (the read model may not have
    /// the service the caller just registered).
    async fn owner_of(&self, service: &Name) -> Result<Option<Name>, Status> {
        let loaded = self
            .executor
            .state::<Option<paved_domain::catalog::Service>>(service)
            .await
            .map_err(error::execute)?;
        Ok(loaded.state.map(|s| s.owner))
    }

    /// Approve or reject.
    async fn decide(&self, request: Request<Decision>, approve: bool) -> Result<Done, Status> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let parsed = parse_request_id(&r.id);
        if parsed.is_none() {
            v.push("id", "must be a provisioning request id: <team>/<number>");
        }
        let (team, number) = parsed.unzip();
        let command = number.map(|number| {
            if approve {
                ProvisioningCommand::Approve {
                    number,
                    reason: r.reason.clone(),
                }
            } else {
                ProvisioningCommand::Reject {
                    number,
                    reason: r.reason.clone(),
                }
            }
        });
        self.run(v, team, number, command, &meta).await
    }
}

const REQUEST_SELECT: &str = "SELECT team, number, resource, kind, environment, service, size,
        action, state, requested_by, requested_at, approver, approved_by, plan_base, plan_files,
        plan_diff, drift, commit_sha, reason, updated_at, last_sequence FROM provisioning_requests";

fn request_from_row(r: &PgRow) -> Result<pb::ProvisionRequest, Status> {
    let db = error::database;
    let team: String = r.try_get("team").map_err(db)?;
    let number: i64 = r.try_get("number").map_err(db)?;
    let files: serde_json::Value = r.try_get("plan_files").map_err(db)?;
    let drift: serde_json::Value = r.try_get("drift").map_err(db)?;
    let requested_at: DateTime<Utc> = r.try_get("requested_at").map_err(db)?;
    let updated_at: DateTime<Utc> = r.try_get("updated_at").map_err(db)?;
    Ok(pb::ProvisionRequest {
        id: request_id(&team, number as u64),
        number: number as u64,
        resource: r.try_get("resource").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        environment: r.try_get("environment").map_err(db)?,
        service: r.try_get("service").map_err(db)?,
        size: r.try_get("size").map_err(db)?,
        action: r.try_get("action").map_err(db)?,
        state: r.try_get("state").map_err(db)?,
        requested_by: r.try_get("requested_by").map_err(db)?,
        requested_at: Some(timestamp(requested_at)),
        approver: r.try_get("approver").map_err(db)?,
        approved_by: r.try_get("approved_by").map_err(db)?,
        plan_base: r.try_get("plan_base").map_err(db)?,
        files: files
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| pb::ProvisionPlanFile {
                        path: f["path"].as_str().unwrap_or_default().to_owned(),
                        deleted: f["deleted"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        diff: r.try_get("plan_diff").map_err(db)?,
        drift: drift
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        commit: r.try_get("commit_sha").map_err(db)?,
        reason: r.try_get("reason").map_err(db)?,
        updated_at: Some(timestamp(updated_at)),
        last_sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
        team,
    })
}

/// The page token of a list: the last (requested_at, team, number) seen.
fn page_after(token: &str) -> Result<Option<(DateTime<Utc>, String, i64)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || error::invalid_field("page_token", "is not a token this list returned");
    let (at, rest) = token.split_once('|').ok_or_else(bad)?;
    let (team, number) = rest.rsplit_once('/').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    let number: i64 = number.parse().map_err(|_| bad())?;
    Ok(Some((at, team.to_owned(), number)))
}

/// What a command on a provisioning request comes to, whichever RPC asked.
struct Done {
    id: String,
    sequence: u64,
    events: u32,
}

macro_rules! from_done {
    ($($t:ty),*) => {
        $(impl From<Done> for $t {
            fn from(d: Done) -> Self {
                Self { id: d.id, sequence: d.sequence, events: d.events }
            }
        })*
    };
}
from_done!(
    pb::RequestResourceResponse,
    pb::ApproveRequestResponse,
    pb::RejectRequestResponse
);

/// An approval or a rejection, whichever RPC carried it.
pub struct Decision {
    request_id: String,
    id: String,
    reason: String,
}

impl crate::request::Idempotent for Decision {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[tonic::async_trait]
impl ProvisioningService for ProvisioningApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RequestResource"),
        err(level = "info")
    )]
    async fn request_resource(
        &self,
        request: Request<pb::RequestResourceRequest>,
    ) -> Reply<pb::RequestResourceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let kind = ResourceKind::parse(&r.kind);
        if kind.is_none() {
            v.push("kind", "must be namespace, postgres, redis or argocd-app");
        }
        let action = if r.action.is_empty() {
            Some(Action::Create)
        } else {
            Action::parse(&r.action)
        };
        if action.is_none() {
            v.push("action", "must be create, change or decommission");
        }
        let environment = v.name("environment", &r.environment);
        let service = v.optional_name("service", &r.service);
        v.line("size", &r.size, 63);
        let size = if r.size.is_empty() {
            "small".to_owned()
        } else {
            r.size.clone()
        };
        // The team: as given, else the service's owner in the catalog.
        let team = if !r.team.is_empty() {
            v.name("team", &r.team)
        } else if let Some(s) = &service {
            match self.owner_of(s).await? {
                Some(owner) => Some(owner),
                None => {
                    v.push("service", format!("service {s} is not in the catalog"));
                    None
                }
            }
        } else {
            v.push("team", "is required for a namespace (or give the service)");
            None
        };
        let command = match (kind, action, environment, &team) {
            (Some(kind), Some(action), Some(environment), Some(team)) => {
                Some(ProvisioningCommand::Request {
                    team: team.clone(),
                    spec: ResourceSpec {
                        kind,
                        environment,
                        service,
                        size,
                    },
                    action,
                    rules: Box::new((*self.rules).clone()),
                })
            }
            _ => None,
        };
        Ok(Response::new(
            self.run(v, team, None, command, &meta).await?.into(),
        ))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ApproveRequest"),
        err(level = "info")
    )]
    async fn approve_request(
        &self,
        request: Request<pb::ApproveRequestRequest>,
    ) -> Reply<pb::ApproveRequestResponse> {
        let request = request.map(|r| Decision {
            request_id: r.request_id,
            id: r.id,
            reason: r.reason,
        });
        Ok(Response::new(self.decide(request, true).await?.into()))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RejectRequest"),
        err(level = "info")
    )]
    async fn reject_request(
        &self,
        request: Request<pb::RejectRequestRequest>,
    ) -> Reply<pb::RejectRequestResponse> {
        let request = request.map(|r| Decision {
            request_id: r.request_id,
            id: r.id,
            reason: r.reason,
        });
        Ok(Response::new(self.decide(request, false).await?.into()))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Reply<pb::GetRequestResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        let Some((team, number)) = parse_request_id(&r.id) else {
            return Err(error::invalid_field(
                "id",
                "must be a provisioning request id: <team>/<number>",
            ));
        };
        self.freshness
            .wait_for(PROVISIONING, r.min_sequence)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE team = $1 AND number = $2"
        )))
        .bind(team.as_str())
        .bind(number as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        row.as_ref()
            .map(request_from_row)
            .transpose()?
            .map(|request| {
                Response::new(pb::GetRequestResponse {
                    request: Some(request),
                })
            })
            .ok_or_else(|| error::not_found("provisioning request", &r.id))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Reply<pb::ListRequestsResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !r.team.is_empty() {
            v.name("team", &r.team);
        }
        let states = [
            RequestState::Requested,
            RequestState::Planned,
            RequestState::Approved,
            RequestState::Rejected,
            RequestState::Applying,
            RequestState::Applied,
            RequestState::Verified,
            RequestState::Failed,
        ];
        if !r.state.is_empty() && !states.iter().any(|s| s.as_str() == r.state) {
            v.push(
                "state",
                format!(
                    "must be one of {}",
                    states.map(RequestState::as_str).join(", ")
                ),
            );
        }
        if r.page_size > MAX_PAGE {
            v.push("page_size", format!("at most {MAX_PAGE}"));
        }
        v.finish().map_err(error::rejection)?;
        let after = page_after(&r.page_token)?;
        self.freshness
            .wait_for(PROVISIONING, r.min_sequence)
            .await?;
        let limit = if r.page_size == 0 { 100 } else { r.page_size };
        let (at, team, number) = after.unzip3();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT}
              WHERE ($1 = '' OR team = $1) AND ($2 = '' OR state = $2)
                AND ($3::timestamptz IS NULL OR (requested_at, team, number) < ($3, $4, $5))
              ORDER BY requested_at DESC, team DESC, number DESC LIMIT $6"
        )))
        .bind(&r.team)
        .bind(&r.state)
        .bind(at)
        .bind(team.unwrap_or_default())
        .bind(number.unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let mut requests = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if requests.len() > limit as usize {
            requests.truncate(limit as usize);
            requests
                .last()
                .map(|last| {
                    let at = last
                        .requested_at
                        .as_ref()
                        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
                        .unwrap_or_default();
                    format!(
                        "{}|{}/{}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        last.team,
                        last.number
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRequestsResponse {
            requests,
            next_page_token,
        }))
    }

    async fn list_resources(
        &self,
        request: Request<pb::ListResourcesRequest>,
    ) -> Reply<pb::ListResourcesResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        if !r.team.is_empty() && Name::parse(&r.team).is_err() {
            return Err(error::invalid_field("team", "is not a team name"));
        }
        self.freshness
            .wait_for(PROVISIONING, r.min_sequence)
            .await?;
        let rows = sqlx::query(
            "SELECT team, resource, kind, environment, service, size, status, open_request, commit_sha
               FROM provisioning_resources WHERE ($1 = '' OR team = $1) ORDER BY team, resource",
        )
        .bind(&r.team)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let db = error::database;
        let resources = rows
            .iter()
            .map(|row| {
                let team: String = row.try_get("team").map_err(db)?;
                let open: Option<i64> = row.try_get("open_request").map_err(db)?;
                Ok(pb::ProvisionedResource {
                    open_request: open
                        .map(|n| request_id(&team, n as u64))
                        .unwrap_or_default(),
                    resource: row.try_get("resource").map_err(db)?,
                    kind: row.try_get("kind").map_err(db)?,
                    environment: row.try_get("environment").map_err(db)?,
                    service: row.try_get("service").map_err(db)?,
                    size: row.try_get("size").map_err(db)?,
                    status: row.try_get("status").map_err(db)?,
                    commit: row.try_get("commit_sha").map_err(db)?,
                    team,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(pb::ListResourcesResponse { resources }))
    }
}

trait Unzip3<A, B, C> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>);
}

impl<A, B, C> Unzip3<A, B, C> for Option<(A, B, C)> {
    fn unzip3(self) -> (Option<A>, Option<B>, Option<C>) {
        match self {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        }
    }
}
