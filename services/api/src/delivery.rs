//! `paved.v1.DeliveryService` (deployments, changes, incidents) and
//! `paved.v1.MetricsService` (DORA, computed by [`paved_domain::dora`] from
//! the delivery projection's rows).

use chrono::{DateTime, Duration, Utc};
use paved_domain::delivery::{
    Change, ChangeCommand, ChangeSpec, Deployment, DeploymentCommand, Incident, IncidentCommand,
    Target,
};
use paved_domain::dora::{self, ChangeFact, DeploymentFact, IncidentFact, Window};
use paved_domain::validate::Violations;
use paved_domain::{Aggregate, Name};
use paved_eventlog::codec::{outcome_from_proto, target_from_proto, time_from_proto, timestamp};
use paved_eventlog::readmodel::{CATALOG, DELIVERY};
use paved_eventlog::{CommandMeta, Executor};
use paved_proto::v1 as pb;
use pb::delivery_service_server::DeliveryService;
use pb::metrics_service_server::MetricsService;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::begin;

type Reply<T> = Result<Response<T>, Status>;

/// How far before a window DORA looks for the deployments and incidents
/// its figures depend on (the deployment before a failure, rollbacks).
pub const LOOKBACK: Duration = Duration::days(90);

/// The id of a deployment or incident a request creates: stable for a
/// request id, so a retried request reaches the same aggregate.
pub fn derived_id(prefix: &str, request_id: &str) -> Name {
    let digest = hex::encode(&Sha256::digest(request_id.as_bytes())[..8]);
    Name::parse(&format!("{prefix}-{digest}")).expect("a prefix and hex make a DNS label")
}

#[derive(Clone)]
pub struct DeliveryApi {
    executor: Executor,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
    webhooks: Option<crate::webhooks::DeliveryLog>,
}

impl DeliveryApi {
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
            webhooks: None,
        }
    }

    /// Lists the deliveries of the webhooks this process serves.
    pub fn with_webhook_log(mut self, log: Option<crate::webhooks::DeliveryLog>) -> Self {
        self.webhooks = log;
        self
    }

    async fn run<A: Aggregate, R: From<Done>>(
        &self,
        v: Violations,
        id: Option<Name>,
        command: Option<A::Command>,
        meta: &CommandMeta,
    ) -> Reply<R> {
        let name = id.as_ref().map(Name::to_string).unwrap_or_default();
        let done =
            crate::request::execute::<A>(&self.executor, &self.counters, v, id, command, meta)
                .await?;
        Ok(Response::new(
            Done {
                sequence: done.sequence,
                events: done.events,
                id: name,
            }
            .into(),
        ))
    }

    async fn deployment_row(&self, id: &str) -> Result<Option<pb::Deployment>, Status> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        row.as_ref().map(deployment_from_row).transpose()
    }
}

const DEPLOYMENT_SELECT: &str = "SELECT id, service, environment, revision, commits, rollback_of,
        source, status, requested_at, started_at, finished_at, application, phase, health,
        message, deployed_revision, requested_by, last_sequence FROM delivery_deployments";

fn deployment_from_row(r: &PgRow) -> Result<pb::Deployment, Status> {
    let db = error::database;
    let finished_at: Option<DateTime<Utc>> = r.try_get("finished_at").map_err(db)?;
    let status: String = r.try_get("status").map_err(db)?;
    let text = |c: &str| -> Result<String, Status> {
        Ok(r.try_get::<Option<String>, _>(c)
            .map_err(db)?
            .unwrap_or_default())
    };
    Ok(pb::Deployment {
        id: r.try_get("id").map_err(db)?,
        target: Some(pb::DeploymentTarget {
            service: r.try_get("service").map_err(db)?,
            environment: r.try_get("environment").map_err(db)?,
            revision: r.try_get("revision").map_err(db)?,
            commits: r.try_get("commits").map_err(db)?,
            rollback_of: text("rollback_of")?,
        }),
        source: r.try_get("source").map_err(db)?,
        requested_at: Some(timestamp(r.try_get("requested_at").map_err(db)?)),
        started_at: r
            .try_get::<Option<DateTime<Utc>>, _>("started_at")
            .map_err(db)?
            .map(timestamp),
        finished_at: finished_at.map(timestamp),
        application: text("application")?,
        outcome: finished_at
            .map(|f| -> Result<pb::DeploymentOutcome, Status> {
                Ok(pb::DeploymentOutcome {
                    succeeded: status == "succeeded",
                    revision: text("deployed_revision")?,
                    phase: text("phase")?,
                    health: text("health")?,
                    message: text("message")?,
                    finished_at: Some(timestamp(f)),
                })
            })
            .transpose()?,
        status,
        requested_by: r.try_get("requested_by").map_err(db)?,
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
    })
}

/// What a delivery command comes to, whichever RPC asked.
struct Done {
    sequence: u64,
    events: u32,
    id: String,
}

macro_rules! from_done {
    ($($t:ty),*) => {
        $(impl From<Done> for $t {
            fn from(d: Done) -> Self {
                Self { sequence: d.sequence, events: d.events, id: d.id }
            }
        })*
    };
}
from_done!(
    pb::RequestDeploymentResponse,
    pb::RequestRollbackResponse,
    pb::RecordDeploymentResponse,
    pb::RecordChangeResponse,
    pb::OpenIncidentResponse,
    pb::LinkIncidentResponse,
    pb::ResolveIncidentResponse
);

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RequestDeployment"),
        err(level = "info")
    )]
    async fn request_deployment(
        &self,
        request: Request<pb::RequestDeploymentRequest>,
    ) -> Reply<pb::RequestDeploymentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let service = v.name("service", &r.service);
        let environment = v.name("environment", &r.environment);
        let command = service.zip(environment).map(|(service, environment)| {
            DeploymentCommand::Request(Target {
                service,
                environment,
                revision: r.revision.clone(),
                commits: r.commits.clone(),
                rollback_of: None,
            })
        });
        let id = Some(derived_id("d", &r.request_id));
        self.run::<Option<Deployment>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RequestRollback"),
        err(level = "info")
    )]
    async fn request_rollback(
        &self,
        request: Request<pb::RequestRollbackRequest>,
    ) -> Reply<pb::RequestRollbackResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let target = v.name("deployment", &r.deployment);
        let Some(target) = target else {
            return Err(error::invalid(v.into_vec()));
        };
        // The read model must hold the deployment, which may just have been
        // recorded: wait for it as far as the log has it.
        let known = self
            .executor
            .state::<Option<Deployment>>(&target)
            .await
            .map_err(error::execute)?;
        self.freshness.wait_for(DELIVERY, known.version).await?;
        let bad = self
            .deployment_row(target.as_str())
            .await?
            .ok_or_else(|| error::not_found("deployment", target.as_str()))?;
        let t = bad.target.unwrap_or_default();
        // Who may roll it back is settled before anything else is said about it.
        let owner: Option<String> =
            sqlx::query_scalar("SELECT owner FROM catalog_services WHERE name = $1")
                .bind(&t.service)
                .fetch_optional(&self.pool)
                .await
                .map_err(error::database)?;
        let owner = owner.as_deref().and_then(|o| Name::parse(o).ok());
        if !owner.is_some_and(|o| meta.principal.acts_for(&o)) {
            return Err(Status::permission_denied(format!(
                "{} may not roll back deployments of {}",
                meta.principal.name, t.service
            )));
        }
        // The revision that ran before it: the previous successful deployment.
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT coalesce(nullif(deployed_revision, ''), revision) FROM delivery_deployments
              WHERE service = $1 AND environment = $2 AND status = 'succeeded'
                AND finished_at < coalesce((SELECT requested_at FROM delivery_deployments WHERE id = $3), now())
                AND id <> $3
              ORDER BY finished_at DESC LIMIT 1",
        )
        .bind(&t.service)
        .bind(&t.environment)
        .bind(target.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        let Some(revision) = previous else {
            return Err(Status::failed_precondition(format!(
                "no successful deployment of {} to {} before {target:?} to roll back to",
                t.service, t.environment
            )));
        };
        let command = Name::parse(&t.service)
            .ok()
            .zip(Name::parse(&t.environment).ok())
            .map(|(service, environment)| {
                DeploymentCommand::Request(Target {
                    service,
                    environment,
                    revision,
                    commits: Vec::new(),
                    rollback_of: Some(target.clone()),
                })
            });
        let id = Some(derived_id("d", &r.request_id));
        self.run::<Option<Deployment>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RecordDeployment"),
        err(level = "info")
    )]
    async fn record_deployment(
        &self,
        request: Request<pb::RecordDeploymentRequest>,
    ) -> Reply<pb::RecordDeploymentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let target = target_from_proto(&mut v, "target.", r.target.as_ref());
        let outcome = outcome_from_proto(&mut v, "outcome.", r.outcome.as_ref());
        let started_at = time_from_proto(r.started_at.as_ref());
        if started_at.is_none() {
            v.push("started_at", "is required");
        }
        let command = match (target, outcome, started_at) {
            (Some(target), Some(outcome), Some(started_at)) => Some(DeploymentCommand::Record {
                target,
                source: r.source.clone(),
                started_at,
                outcome,
            }),
            _ => None,
        };
        let id = Some(derived_id("d", &r.request_id));
        self.run::<Option<Deployment>, _>(v, id, command, &meta)
            .await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RecordChange"),
        err(level = "info")
    )]
    async fn record_change(
        &self,
        request: Request<pb::RecordChangeRequest>,
    ) -> Reply<pb::RecordChangeResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let sha = v.name("sha", &r.sha.to_ascii_lowercase());
        let service = v.name("service", &r.service);
        let committed_at = time_from_proto(r.committed_at.as_ref());
        if committed_at.is_none() {
            v.push("committed_at", "is required");
        }
        let command = service.zip(committed_at).map(|(service, committed_at)| {
            ChangeCommand::Record(ChangeSpec {
                service,
                authored_at: time_from_proto(r.authored_at.as_ref()),
                committed_at,
                merged_at: time_from_proto(r.merged_at.as_ref()),
                pr_number: r.pr_number,
                pr_url: r.pr_url.clone(),
                author: r.author.clone(),
                title: r.title.clone(),
                backfill: r.backfill,
            })
        });
        self.run::<Option<Change>, _>(v, sha, command, &meta).await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "OpenIncident"),
        err(level = "info")
    )]
    async fn open_incident(
        &self,
        request: Request<pb::OpenIncidentRequest>,
    ) -> Reply<pb::OpenIncidentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = if r.id.is_empty() {
            Some(derived_id("inc", &r.request_id))
        } else {
            v.name("id", &r.id)
        };
        let services: Vec<Option<Name>> = r
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| v.name(&format!("services[{i}]"), s))
            .collect();
        let caused_by = if r.caused_by_deployment.is_empty() {
            None
        } else {
            v.name("caused_by_deployment", &r.caused_by_deployment)
        };
        let started_at = time_from_proto(r.started_at.as_ref());
        if started_at.is_none() {
            v.push("started_at", "is required");
        }
        let command = started_at.map(|started_at| IncidentCommand::Open {
            title: r.title.clone(),
            services: services.into_iter().flatten().collect(),
            severity: r.severity.clone(),
            started_at,
            caused_by,
        });
        self.run::<Option<Incident>, _>(v, id, command, &meta).await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "LinkIncident"),
        err(level = "info")
    )]
    async fn link_incident(
        &self,
        request: Request<pb::LinkIncidentRequest>,
    ) -> Reply<pb::LinkIncidentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("incident", &r.incident);
        let deployment = v.name("deployment", &r.deployment);
        let command = deployment.map(|deployment| IncidentCommand::Link { deployment });
        self.run::<Option<Incident>, _>(v, id, command, &meta).await
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ResolveIncident"),
        err(level = "info")
    )]
    async fn resolve_incident(
        &self,
        request: Request<pb::ResolveIncidentRequest>,
    ) -> Reply<pb::ResolveIncidentResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("incident", &r.incident);
        let resolved_at = time_from_proto(r.resolved_at.as_ref());
        if resolved_at.is_none() {
            v.push("resolved_at", "is required");
        }
        let command = resolved_at.map(|resolved_at| IncidentCommand::Resolve { resolved_at });
        self.run::<Option<Incident>, _>(v, id, command, &meta).await
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Reply<pb::GetDeploymentResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        self.freshness.wait_for(DELIVERY, r.min_sequence).await?;
        self.deployment_row(&r.id)
            .await?
            .map(|deployment| {
                Response::new(pb::GetDeploymentResponse {
                    deployment: Some(deployment),
                })
            })
            .ok_or_else(|| error::not_found("deployment", &r.id))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        let principal = self.auth.authenticate(&request).await?;
        if !principal.is_admin() {
            return Err(Status::permission_denied(
                "webhook deliveries name every team's repositories: admins only",
            ));
        }
        let r = request.into_inner();
        if r.limit as usize > crate::webhooks::RECENT {
            return Err(error::invalid_field(
                "limit",
                format!("at most {}", crate::webhooks::RECENT),
            ));
        }
        if !matches!(
            r.source.as_str(),
            "" | "github" | "argocd" | "incidents" | "pagerduty" | "alertmanager"
        ) {
            return Err(error::invalid_field(
                "source",
                "github, argocd, incidents, pagerduty, alertmanager or empty",
            ));
        }
        let limit = if r.limit == 0 { 50 } else { r.limit as usize };
        let Some(log) = &self.webhooks else {
            return Err(Status::failed_precondition(
                "this process serves no webhooks (PAVED_WEBHOOK_LISTEN is empty)",
            ));
        };
        let deliveries = log
            .recent(&r.source, limit)
            .into_iter()
            .map(|d| pb::WebhookDelivery {
                received_at: Some(timestamp(d.received_at)),
                source: d.source.to_owned(),
                event: d.event,
                delivery_id: d.id,
                outcome: d.outcome.as_str().to_owned(),
                reason: d.reason,
                http_status: u32::from(d.http_status),
                recorded: d.recorded,
                skipped: d
                    .skipped
                    .into_iter()
                    .map(|s| pb::SkippedChange {
                        sha: s.sha,
                        rule: s.kind,
                        reason: s.reason,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries,
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Reply<pb::ListDeploymentsResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        if r.limit > 1000 {
            return Err(error::invalid_field("limit", "at most 1000"));
        }
        self.freshness.wait_for(DELIVERY, r.min_sequence).await?;
        // The team filter reads the catalog's owners: it must be as fresh.
        if !r.team.is_empty() {
            self.freshness.wait_for(CATALOG, r.min_sequence).await?;
        }
        let limit = if r.limit == 0 { 50 } else { r.limit };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT}
              WHERE ($1 = '' OR service = $1) AND ($2 = '' OR environment = $2)
                AND ($3 = '' OR service IN (SELECT name FROM catalog_services WHERE owner = $3))
              ORDER BY requested_at DESC, id LIMIT $4"
        )))
        .bind(&r.service)
        .bind(&r.environment)
        .bind(&r.team)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let deployments = rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }
}

// ---- DORA ----

/// Whose figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Organisation,
    Team(String),
    Service(String),
}

impl Scope {
    pub fn label(&self) -> String {
        match self {
            Scope::Organisation => "organisation".to_owned(),
            Scope::Team(t) => format!("team:{t}"),
            Scope::Service(s) => format!("service:{s}"),
        }
    }
}

/// The delivery facts DORA needs for `window` (and its lookback).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub deployments: Vec<DeploymentFact>,
    pub changes: Vec<ChangeFact>,
    pub incidents: Vec<IncidentFact>,
}

impl Facts {
    /// The facts of some services only.
    pub fn restrict(&self, services: &std::collections::HashSet<&str>) -> Facts {
        Facts {
            deployments: self
                .deployments
                .iter()
                .filter(|d| services.contains(d.service.as_str()))
                .cloned()
                .collect(),
            changes: self
                .changes
                .iter()
                .filter(|c| services.contains(c.service.as_str()))
                .cloned()
                .collect(),
            incidents: self
                .incidents
                .iter()
                .filter(|i| i.services.iter().any(|s| services.contains(s.as_str())))
                .cloned()
                .collect(),
        }
    }

    /// The facts of every group at once, in one pass over them: each
    /// group's are what [`restrict`](Self::restrict) to its services gives
    /// (in the same order), where `group_of` names the group of a service
    /// (`None`: none). `/metrics` splits by team and by service this way
    /// instead of filtering everything once per team and per service.
    pub fn split<G: Clone + Eq + std::hash::Hash>(
        &self,
        group_of: impl Fn(&str) -> Option<G>,
    ) -> std::collections::HashMap<G, Facts> {
        let mut out: std::collections::HashMap<G, Facts> = std::collections::HashMap::new();
        for d in &self.deployments {
            if let Some(g) = group_of(&d.service) {
                out.entry(g).or_default().deployments.push(d.clone());
            }
        }
        for c in &self.changes {
            if let Some(g) = group_of(&c.service) {
                out.entry(g).or_default().changes.push(c.clone());
            }
        }
        for i in &self.incidents {
            let mut groups: Vec<G> = Vec::new();
            for g in i.services.iter().filter_map(|s| group_of(s)) {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
            for g in groups {
                out.entry(g).or_default().incidents.push(i.clone());
            }
        }
        out
    }
}

/// Loads the facts of `scope` (all services when `None`) for `window`.
/// Each query is one index range per service (or the time index for all).
pub async fn load_facts(
    pool: &PgPool,
    services: Option<&[String]>,
    window: Window,
) -> Result<Facts, sqlx::Error> {
    let from = window.from - LOOKBACK;
    let (only_deployments, only, only_incidents) = match services {
        Some(_) => (
            "AND service = ANY($2)",
            "AND service = ANY($3)",
            "AND services && $3",
        ),
        None => ("", "", ""),
    };
    let scope = services.unwrap_or_default();
    // The services are the last parameter, bound only when scoped.
    macro_rules! scoped {
        ($q:expr) => {{
            let q = $q;
            if services.is_some() { q.bind(scope) } else { q }
        }};
    }
    // Deployments after the window too: a later rollback marks what it rolls back.
    let sql = format!(
        "SELECT id, service, status = 'succeeded', finished_at, rollback_of
           FROM delivery_deployments
          WHERE environment = 'production' AND finished_at >= $1
            AND status IN ('succeeded', 'failed') {only_deployments}"
    );
    let deployments = scoped!(
        sqlx::query_as::<_, (String, String, bool, DateTime<Utc>, Option<String>)>(
            sqlx::AssertSqlSafe(sql),
        )
        .bind(from)
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(id, service, succeeded, finished_at, rollback_of)| DeploymentFact {
            id,
            service,
            succeeded,
            finished_at,
            rollback_of,
        },
    )
    .collect();
    let sql = format!(
        "SELECT service, committed_at, deployed_at FROM delivery_changes
          WHERE deployed_at >= $1 AND deployed_at < $2 AND NOT backfill {only}"
    );
    let changes = scoped!(
        sqlx::query_as::<_, (String, DateTime<Utc>, DateTime<Utc>)>(sqlx::AssertSqlSafe(sql))
            .bind(window.from)
            .bind(window.to)
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(service, committed_at, deployed_at)| ChangeFact {
        service,
        committed_at,
        deployed_at,
    })
    .collect();
    let sql = format!(
        "SELECT id, services, started_at, resolved_at, caused_by FROM delivery_incidents
          WHERE started_at < $2 AND (resolved_at IS NULL OR resolved_at >= $1) {only_incidents}"
    );
    let incidents = scoped!(
        sqlx::query_as::<
            _,
            (
                String,
                Vec<String>,
                DateTime<Utc>,
                Option<DateTime<Utc>>,
                Vec<String>
            ),
        >(sqlx::AssertSqlSafe(sql),)
        .bind(from)
        .bind(window.to)
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(id, services, started_at, resolved_at, caused_by)| IncidentFact {
            id,
            services,
            started_at,
            resolved_at,
            caused_by,
        },
    )
    .collect();
    Ok(Facts {
        deployments,
        changes,
        incidents,
    })
}

/// The services of a team, per the catalog.
pub async fn team_services(pool: &PgPool, team: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM catalog_services WHERE owner = $1")
        .bind(team)
        .fetch_all(pool)
        .await
}

fn spread(s: Option<dora::Spread>) -> Option<pb::DoraSpread> {
    let hours = |d: Duration| d.num_seconds() as f64 / 3600.0;
    s.map(|s| pb::DoraSpread {
        count: s.count as u32,
        median_hours: hours(s.median),
        p90_hours: hours(s.p90),
    })
}

/// The report of `scope` over `window`.
pub fn report(
    scope: &Scope,
    facts: &Facts,
    window: Window,
    attribution: Duration,
    daily: bool,
) -> pb::DoraReport {
    let (d, days) = dora::compute_with_daily(
        &facts.deployments,
        &facts.changes,
        &facts.incidents,
        window,
        attribution,
        daily,
    );
    let level = |l: Option<dora::Level>| l.map(|l| l.as_str().to_owned()).unwrap_or_default();
    let days = days
        .into_iter()
        .map(|day| pb::DoraDay {
            date: day.date.to_string(),
            deployments: day.deployments as u32,
            change_failures: day.change_failures as u32,
            lead_time_median_hours: day
                .lead_time_median
                .map(|d| d.num_seconds() as f64 / 3600.0),
            restores: day.restores as u32,
        })
        .collect();
    pb::DoraReport {
        scope: scope.label(),
        since: Some(timestamp(window.from)),
        until: Some(timestamp(window.to)),
        deployments: d.deployments as u32,
        finished_deployments: d.finished_deployments as u32,
        deployments_per_day: d.deployments_per_day,
        lead_time: spread(d.lead_time),
        change_failures: d.change_failures as u32,
        heuristic_failures: d.heuristic_failures as u32,
        change_failure_rate: d.change_failure_rate,
        time_to_restore: spread(d.time_to_restore),
        open_incidents: d.open_incidents as u32,
        rework_deployments: d.rework_deployments as u32,
        rework_rate: d.rework_rate,
        frequency_level: d.frequency_level.as_str().to_owned(),
        lead_time_level: level(d.lead_time_level),
        change_failure_level: level(d.change_failure_level),
        time_to_restore_level: level(d.time_to_restore_level),
        days,
    }
}

#[derive(Clone)]
pub struct MetricsApi {
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    attribution: Duration,
}

impl MetricsApi {
    pub fn new(
        pool: PgPool,
        auth: Authenticator,
        freshness: Freshness,
        attribution: Duration,
    ) -> Self {
        Self {
            pool,
            auth,
            freshness,
            attribution,
        }
    }
}

impl MetricsApi {
    /// NOT_FOUND unless `exists` (a query on `$1`) finds `name` in the catalog.
    async fn must_exist(&self, exists: &'static str, what: &str, name: &str) -> Result<(), Status> {
        let found: bool = sqlx::query_scalar(exists)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(error::database)?;
        if found {
            Ok(())
        } else {
            Err(error::not_found(what, name))
        }
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetDora"),
        err(level = "info")
    )]
    async fn get_dora(&self, request: Request<pb::GetDoraRequest>) -> Reply<pb::GetDoraResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !r.team.is_empty() && !r.service.is_empty() {
            v.push("service", "give a team or a service, not both");
        }
        if r.window_days > 3660 {
            v.push("window_days", "at most 3660 days");
        }
        let until = time_from_proto(r.until.as_ref()).unwrap_or_else(Utc::now);
        let since = match time_from_proto(r.since.as_ref()) {
            Some(s) => s,
            None => {
                until
                    - Duration::days(i64::from(if r.window_days == 0 {
                        30
                    } else {
                        r.window_days
                    }))
            }
        };
        if since >= until {
            v.push("since", "must be before until");
        }
        v.finish().map_err(error::rejection)?;
        self.freshness.wait_for(DELIVERY, r.min_sequence).await?;
        // A team's or a service's figures look them up in the catalog.
        if !r.team.is_empty() || !r.service.is_empty() {
            self.freshness.wait_for(CATALOG, r.min_sequence).await?;
        }
        let scope = if !r.team.is_empty() {
            Scope::Team(r.team.clone())
        } else if !r.service.is_empty() {
            Scope::Service(r.service.clone())
        } else {
            Scope::Organisation
        };
        let services = match &scope {
            Scope::Organisation => None,
            Scope::Service(s) => {
                self.must_exist(
                    "SELECT EXISTS (SELECT 1 FROM catalog_services WHERE name = $1)",
                    "service",
                    s,
                )
                .await?;
                Some(vec![s.clone()])
            }
            Scope::Team(t) => {
                self.must_exist(
                    "SELECT EXISTS (SELECT 1 FROM catalog_teams WHERE name = $1)",
                    "team",
                    t,
                )
                .await?;
                Some(
                    team_services(&self.pool, t)
                        .await
                        .map_err(error::database)?,
                )
            }
        };
        let window = Window {
            from: since,
            to: until,
        };
        let facts = load_facts(&self.pool, services.as_deref(), window)
            .await
            .map_err(error::database)?;
        Ok(Response::new(pb::GetDoraResponse {
            report: Some(report(&scope, &facts, window, self.attribution, r.daily)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn splitting_facts_in_one_pass_gives_what_restricting_them_gives() {
        let at = |h: i64| Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(h);
        let services = ["a", "b", "c", "d", "e"];
        let facts = Facts {
            deployments: (0..40)
                .map(|i| DeploymentFact {
                    id: format!("d{i}"),
                    service: services[i % 5].to_owned(),
                    succeeded: i % 3 != 0,
                    finished_at: at(i as i64 % 7),
                    rollback_of: (i % 11 == 0).then(|| format!("d{}", i / 2)),
                })
                .collect(),
            changes: (0..30)
                .map(|i| ChangeFact {
                    service: services[i % 4].to_owned(),
                    committed_at: at(i as i64),
                    deployed_at: at(i as i64 + 2),
                })
                .collect(),
            incidents: (0..12)
                .map(|i| IncidentFact {
                    id: format!("i{i}"),
                    // Across services, teams, and one nobody owns.
                    services: vec![services[i % 5].to_owned(), ["b", "zz", "a"][i % 3].into()],
                    started_at: at(i as i64),
                    resolved_at: (i % 2 == 0).then(|| at(i as i64 + 1)),
                    caused_by: vec![],
                })
                .collect(),
        };
        let team_of = |s: &str| match s {
            "a" | "b" => Some("payments"),
            "c" | "d" => Some("search"),
            _ => None,
        };
        let by_team = facts.split(team_of);
        assert_eq!(by_team.len(), 2);
        for team in ["payments", "search"] {
            let own: HashSet<&str> = services
                .iter()
                .copied()
                .filter(|s| team_of(s) == Some(team))
                .collect();
            assert_eq!(by_team[team], facts.restrict(&own), "{team}");
        }
        let by_service = facts.split(|s| Some(s.to_owned()));
        for service in services {
            assert_eq!(
                by_service[service],
                facts.restrict(&HashSet::from([service])),
                "{service}"
            );
        }
    }
}
