//! `paved.v1.TemplateService`: publishing template versions and running
//! tasks go through the write path (aggregates `template` and `task`);
//! reads come from the templates projection's tables, and time to first
//! deploy joins them with the delivery projection's deployments.

use chrono::{DateTime, Utc};
use paved_domain::templates::library::{TemplateCommand, TemplateLibrary};
use paved_domain::templates::task::{Task, TaskCommand, task_id};
use paved_domain::templates::{self, FETCH_ACTIONS};
use paved_domain::validate::Violations;
use paved_domain::{Name, Role};
use paved_eventlog::Executor;
use paved_eventlog::codec::timestamp;
use paved_eventlog::readmodel::{DELIVERY, TEMPLATES};
use paved_proto::v1 as pb;
use pb::template_service_server::TemplateService;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::begin;

type Reply<T> = Result<Response<T>, Status>;

/// Most tasks one list returns.
const MAX_PAGE: u32 = 500;
/// Most bytes of a template document.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Most bytes of a task's parameters (JSON).
const MAX_PARAMETERS: usize = 64 * 1024;

#[derive(Clone)]
pub struct TemplateApi {
    executor: Executor,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
}

impl TemplateApi {
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
        }
    }

    /// The template's versions, from the log (a task runs what was
    /// published, whether or not the read model has it yet).
    async fn library(&self, name: &Name) -> Result<TemplateLibrary, Status> {
        Ok(self
            .executor
            .state::<TemplateLibrary>(name)
            .await
            .map_err(error::execute)?
            .state)
    }
}

/// `group:default/payments`, `group:payments` or `payments` → the team.
fn team_of(owner: &Value) -> Option<Name> {
    let owner = owner.as_str()?;
    paved_domain::catalog::EntityRef::parse(owner, Some("Group"), "default")
        .ok()?
        .team()
}

fn time(r: &PgRow, column: &str) -> Result<Option<paved_proto::wkt::Timestamp>, Status> {
    let t: Option<DateTime<Utc>> = r.try_get(column).map_err(error::database)?;
    Ok(t.map(timestamp))
}

fn json_text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

const VERSION_SELECT: &str = "SELECT v.name, v.version, v.title, v.description, v.owner, v.tags,
        v.digest, v.time_saved_seconds, v.steps, v.files, v.document, v.published_by,
        v.published_at, (SELECT max(version) FROM template_versions l WHERE l.name = v.name) AS latest
   FROM template_versions v";

fn version_from_row(r: &PgRow, whole: bool) -> Result<pb::TemplateInfo, Status> {
    let db = error::database;
    let steps: Value = r.try_get("steps").map_err(db)?;
    let files: Value = r.try_get("files").map_err(db)?;
    let document: Value = r.try_get("document").map_err(db)?;
    let published_at: DateTime<Utc> = r.try_get("published_at").map_err(db)?;
    Ok(pb::TemplateInfo {
        name: r.try_get("name").map_err(db)?,
        version: r.try_get::<i64, _>("version").map_err(db)? as u64,
        latest_version: r.try_get::<i64, _>("latest").map_err(db)? as u64,
        title: r.try_get("title").map_err(db)?,
        description: r.try_get("description").map_err(db)?,
        owner: r.try_get("owner").map_err(db)?,
        tags: r.try_get("tags").map_err(db)?,
        digest: r.try_get("digest").map_err(db)?,
        time_saved_seconds: r.try_get::<i64, _>("time_saved_seconds").map_err(db)? as u64,
        published_by: r.try_get("published_by").map_err(db)?,
        published_at: Some(timestamp(published_at)),
        document_yaml: if whole {
            serde_yaml_ng::to_string(&document).map_err(|e| error::internal(&e))?
        } else {
            String::new()
        },
        files: if whole {
            files
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        },
        steps: steps
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| pb::TaskStepDef {
                id: s["id"].as_str().unwrap_or_default().to_owned(),
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                action: s["action"].as_str().unwrap_or_default().to_owned(),
            })
            .collect(),
    })
}

const TASK_SELECT: &str = "SELECT id, template, version, team, service, kind, upgrade_from_version,
        status, requested_by, parameters, output, created_at, updated_at, finished_at, last_sequence
   FROM template_tasks";

fn task_from_row(r: &PgRow) -> Result<pb::TemplateTask, Status> {
    let db = error::database;
    let parameters: Value = r.try_get("parameters").map_err(db)?;
    Ok(pb::TemplateTask {
        id: r.try_get("id").map_err(db)?,
        template: r.try_get("template").map_err(db)?,
        version: r.try_get::<i64, _>("version").map_err(db)? as u64,
        team: r.try_get("team").map_err(db)?,
        service: r.try_get("service").map_err(db)?,
        kind: r.try_get("kind").map_err(db)?,
        upgrade_from_version: r.try_get::<i64, _>("upgrade_from_version").map_err(db)? as u64,
        status: r.try_get("status").map_err(db)?,
        requested_by: r.try_get("requested_by").map_err(db)?,
        parameters_json: parameters.to_string(),
        output_json: json_text(r.try_get("output").map_err(db)?),
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
        finished_at: time(r, "finished_at")?,
        last_sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
        steps: Vec::new(),
    })
}

async fn steps_of(pool: &PgPool, task: &str) -> Result<Vec<pb::TaskStepInfo>, Status> {
    let rows = sqlx::query(
        "SELECT id, name, action, status, attempts, output, log, reason, started_at, finished_at
           FROM template_task_steps WHERE task = $1 ORDER BY position",
    )
    .bind(task)
    .fetch_all(pool)
    .await
    .map_err(error::database)?;
    let db = error::database;
    rows.iter()
        .map(|r| {
            Ok(pb::TaskStepInfo {
                id: r.try_get("id").map_err(db)?,
                name: r.try_get("name").map_err(db)?,
                action: r.try_get("action").map_err(db)?,
                status: r.try_get("status").map_err(db)?,
                attempts: r.try_get::<i32, _>("attempts").map_err(db)? as u32,
                output_json: json_text(r.try_get("output").map_err(db)?),
                log: r.try_get("log").map_err(db)?,
                reason: r.try_get("reason").map_err(db)?,
                started_at: time(r, "started_at")?,
                finished_at: time(r, "finished_at")?,
            })
        })
        .collect()
}

/// The page token of a task list: the last (created_at, id) seen.
fn page_after(token: &str) -> Result<Option<(DateTime<Utc>, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || error::invalid_field("page_token", "is not a token this list returned");
    let (at, id) = token.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    Ok(Some((at, id.to_owned())))
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "PublishTemplate"),
        err(level = "info")
    )]
    async fn publish_template(
        &self,
        request: Request<pb::PublishTemplateRequest>,
    ) -> Reply<pb::PublishTemplateResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        if meta.command_id.len() + "/catalog".len() > crate::request::MAX_REQUEST_ID {
            v.push(
                "request_id",
                format!(
                    "at most {} characters here (the catalog entry takes the rest)",
                    crate::request::MAX_REQUEST_ID - "/catalog".len()
                ),
            );
        }
        let mut document = None;
        if r.document_yaml.len() > MAX_DOCUMENT {
            v.push("document_yaml", format!("at most {MAX_DOCUMENT} bytes"));
        } else if let Err(s) = crate::catalog::check_flow_depth(&r.document_yaml) {
            v.push("document_yaml", s.message().to_owned());
        } else {
            match serde_yaml_ng::from_str::<Value>(&r.document_yaml) {
                Ok(d) if d.is_object() => document = Some(d),
                Ok(_) => v.push("document_yaml", "must be a Template document (a mapping)"),
                Err(e) => v.push("document_yaml", format!("is not YAML: {e}")),
            }
        }
        let name = document.as_ref().and_then(|d| {
            let raw = d["metadata"]["name"].as_str().unwrap_or_default();
            match Name::parse(raw) {
                Ok(n) => Some(n),
                Err(_) => {
                    v.push(
                        "metadata.name",
                        "must be a lowercase DNS label (a-z, 0-9, -) for a template Paved runs",
                    );
                    None
                }
            }
        });
        let files: Vec<(String, String)> =
            r.files.into_iter().map(|f| (f.path, f.content)).collect();
        let command = document.map(|document| TemplateCommand::Publish { document, files });
        let done = crate::request::execute::<TemplateLibrary>(
            &self.executor,
            &self.counters,
            v,
            name.clone(),
            command,
            &meta,
        )
        .await?;
        let name = name.unwrap_or_else(|| unreachable!("execute refuses a request without a name"));
        // The document as a catalog entity, as ImportBackstage would store it.
        let mut entity = meta.clone();
        entity.command_id = format!("{}/catalog", meta.command_id);
        entity.causation_id = meta.command_id.clone();
        let imported =
            crate::catalog::import_descriptors(&self.executor, &entity, &r.document_yaml).await?;
        let library = self.library(&name).await?;
        let latest = library.latest();
        Ok(Response::new(pb::PublishTemplateResponse {
            name: name.to_string(),
            version: latest.map_or(0, |l| l.version),
            digest: latest.map(|l| l.digest.clone()).unwrap_or_default(),
            sequence: done.sequence.max(imported.sequence),
            events: done.events,
            entity_ref: format!("template:default/{name}"),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Reply<pb::GetTemplateResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        if Name::parse(&r.name).is_err() {
            return Err(error::invalid_field("name", "is not a template name"));
        }
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{VERSION_SELECT} WHERE v.name = $1 AND ($2 = 0 OR v.version = $2)
              ORDER BY v.version DESC LIMIT 1"
        )))
        .bind(&r.name)
        .bind(r.version as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        match row {
            Some(row) => Ok(Response::new(pb::GetTemplateResponse {
                template: Some(version_from_row(&row, true)?),
            })),
            None if r.version == 0 => Err(error::not_found("template", &r.name)),
            None => Err(error::not_found(
                "template version",
                &format!("{} v{}", r.name, r.version),
            )),
        }
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Reply<pb::ListTemplatesResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{VERSION_SELECT} WHERE v.version = (SELECT max(version) FROM template_versions l WHERE l.name = v.name)
              ORDER BY v.name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let templates = rows
            .iter()
            .map(|row| version_from_row(row, false))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListTemplatesResponse { templates }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "CreateTask"),
        err(level = "info")
    )]
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Reply<pb::CreateTaskResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let template = v.name("template", &r.template);
        let mut given = serde_json::Map::new();
        if r.parameters_json.len() > MAX_PARAMETERS {
            v.push("parameters_json", format!("at most {MAX_PARAMETERS} bytes"));
        } else if !r.parameters_json.trim().is_empty() {
            match serde_json::from_str::<Value>(&r.parameters_json) {
                Ok(Value::Object(m)) => given = m,
                Ok(_) => v.push("parameters_json", "must be a JSON object"),
                Err(e) => v.push("parameters_json", format!("is not JSON: {e}")),
            }
        }
        // The team: as given, else the owner the form names, else the caller's.
        let team = if !r.team.is_empty() {
            v.name("team", &r.team)
        } else if let Some(owner) = given.get("owner") {
            let t = team_of(owner);
            if t.is_none() {
                v.push(
                    "parameters.owner",
                    "must name a team (group:default/<team>)",
                );
            }
            t
        } else if let Role::Member { team } = &meta.principal.role {
            Some(team.clone())
        } else {
            v.push("team", "is required (the template has no owner parameter)");
            None
        };
        v.finish().map_err(error::rejection)?;
        let (Some(template), Some(team)) = (template, team) else {
            return Err(error::invalid_field("template", "is required"));
        };
        let library = self.library(&template).await?;
        let version = match r.version {
            0 => library.latest(),
            n => library.version(n),
        };
        let Some(version) = version else {
            return Err(if r.version == 0 {
                error::not_found("template", template.as_str())
            } else {
                error::not_found("template version", &format!("{template} v{}", r.version))
            });
        };
        let id = task_id(template.as_str(), &meta.principal.name, &meta.command_id);
        let command = TaskCommand::Create {
            team,
            template,
            version: version.version,
            document: version.document.clone(),
            parameters: given,
        };
        if r.dry_run {
            // The creation's own rules, then the fetch steps rendered.
            let events = self
                .executor
                .decide::<Option<Task>>(&id, &command, &meta)
                .await
                .map_err(error::execute)?;
            return dry_run(&events, version);
        }
        let done = crate::request::execute::<Option<Task>>(
            &self.executor,
            &self.counters,
            Violations::new(),
            Some(id.clone()),
            Some(command),
            &meta,
        )
        .await?;
        Ok(Response::new(pb::CreateTaskResponse {
            task_id: id.to_string(),
            sequence: done.sequence,
            events: done.events,
            version: version.version,
            files: Vec::new(),
            not_run: Vec::new(),
        }))
    }

    async fn get_task(&self, request: Request<pb::GetTaskRequest>) -> Reply<pb::GetTaskResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        if Name::parse(&r.id).is_err() {
            return Err(error::invalid_field("id", "is not a task id"));
        }
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{TASK_SELECT} WHERE id = $1")))
            .bind(&r.id)
            .fetch_optional(&self.pool)
            .await
            .map_err(error::database)?;
        let Some(row) = row else {
            return Err(error::not_found("task", &r.id));
        };
        let mut task = task_from_row(&row)?;
        task.steps = steps_of(&self.pool, &r.id).await?;
        Ok(Response::new(pb::GetTaskResponse { task: Some(task) }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Reply<pb::ListTasksResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !r.team.is_empty() {
            v.name("team", &r.team);
        }
        if !r.template.is_empty() {
            v.name("template", &r.template);
        }
        if !["", "running", "completed", "failed"].contains(&r.status.as_str()) {
            v.push("status", "must be running, completed or failed");
        }
        if r.page_size > MAX_PAGE {
            v.push("page_size", format!("at most {MAX_PAGE}"));
        }
        v.finish().map_err(error::rejection)?;
        let after = page_after(&r.page_token)?;
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        let limit = if r.page_size == 0 { 100 } else { r.page_size };
        let (at, id) = after.unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TASK_SELECT}
              WHERE ($1 = '' OR team = $1) AND ($2 = '' OR template = $2) AND ($3 = '' OR status = $3)
                AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
              ORDER BY created_at DESC, id DESC LIMIT $6"
        )))
        .bind(&r.team)
        .bind(&r.template)
        .bind(&r.status)
        .bind(at)
        .bind(id.unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let mut tasks = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks
                .last()
                .map(|last| {
                    let at = last
                        .created_at
                        .as_ref()
                        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
                        .unwrap_or_default();
                    format!(
                        "{}|{}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        last.id
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token,
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "RetryTask"),
        err(level = "info")
    )]
    async fn retry_task(
        &self,
        request: Request<pb::RetryTaskRequest>,
    ) -> Reply<pb::RetryTaskResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("id", &r.id);
        let done = crate::request::execute::<Option<Task>>(
            &self.executor,
            &self.counters,
            v,
            id,
            Some(TaskCommand::Retry),
            &meta,
        )
        .await?;
        Ok(Response::new(pb::RetryTaskResponse {
            sequence: done.sequence,
            events: done.events,
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "UpgradeService"),
        err(level = "info")
    )]
    async fn upgrade_service(
        &self,
        request: Request<pb::UpgradeServiceRequest>,
    ) -> Reply<pb::UpgradeServiceResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let service = v.name("service", &r.service);
        v.finish().map_err(error::rejection)?;
        let Some(service) = service else {
            return Err(error::invalid_field("service", "is required"));
        };
        // What the service was made from (or last upgraded to).
        let row: Option<(String, i64, String, Value)> = sqlx::query_as(
            "SELECT template, version, team, parameters FROM template_tasks
              WHERE service = $1 AND status = 'completed'
              ORDER BY version DESC, finished_at DESC LIMIT 1",
        )
        .bind(service.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        let Some((template, from, team, parameters)) = row else {
            return Err(error::not_found(
                "service made from a template",
                service.as_str(),
            ));
        };
        let template = Name::parse(&template).map_err(|e| error::internal(&e))?;
        // The service's owner now (it may have moved to another team since
        // it was made), from the log; the task's team when it is gone.
        let team = match self
            .executor
            .state::<Option<paved_domain::catalog::Service>>(&service)
            .await
            .map_err(error::execute)?
            .state
        {
            Some(s) => s.owner,
            None => Name::parse(&team).map_err(|e| error::internal(&e))?,
        };
        let library = self.library(&template).await?;
        let to = match r.version {
            0 => library.latest().map_or(0, |l| l.version),
            n => n,
        };
        if library.version(to).is_none() {
            return Err(error::not_found(
                "template version",
                &format!("{template} v{to}"),
            ));
        }
        let id = task_id(template.as_str(), &meta.principal.name, &meta.command_id);
        let command = TaskCommand::Upgrade {
            team,
            service,
            template,
            from_version: from as u64,
            to_version: to,
            parameters: match parameters {
                Value::Object(m) => m,
                _ => Default::default(),
            },
        };
        let done = crate::request::execute::<Option<Task>>(
            &self.executor,
            &self.counters,
            Violations::new(),
            Some(id.clone()),
            Some(command),
            &meta,
        )
        .await?;
        Ok(Response::new(pb::UpgradeServiceResponse {
            task_id: id.to_string(),
            sequence: done.sequence,
            events: done.events,
            from_version: from as u64,
            to_version: to,
        }))
    }

    async fn list_outdated_services(
        &self,
        request: Request<pb::ListOutdatedServicesRequest>,
    ) -> Reply<pb::ListOutdatedServicesResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        if !r.team.is_empty() && Name::parse(&r.team).is_err() {
            return Err(error::invalid_field("team", "is not a team name"));
        }
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        let rows: Vec<(String, String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (t.service) t.service, t.team, t.template, t.version,
                    (SELECT max(version) FROM template_versions v WHERE v.name = t.template), t.id
               FROM template_tasks t
              WHERE t.service <> '' AND t.status = 'completed' AND ($1 = '' OR t.team = $1)
              ORDER BY t.service, t.version DESC, t.finished_at DESC",
        )
        .bind(&r.team)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        let services = rows
            .into_iter()
            .filter(|(.., version, latest, _)| latest > version)
            .map(
                |(service, team, template, version, latest, task_id)| pb::OutdatedService {
                    service,
                    team,
                    template,
                    version: version as u64,
                    latest_version: latest as u64,
                    task_id,
                },
            )
            .collect();
        Ok(Response::new(pb::ListOutdatedServicesResponse { services }))
    }

    async fn get_template_stats(
        &self,
        request: Request<pb::GetTemplateStatsRequest>,
    ) -> Reply<pb::GetTemplateStatsResponse> {
        self.auth.authenticate(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !r.team.is_empty() {
            v.name("team", &r.team);
        }
        if !r.template.is_empty() {
            v.name("template", &r.template);
        }
        v.finish().map_err(error::rejection)?;
        // Tasks from one read model, deployments from another: both at it.
        self.freshness.wait_for(TEMPLATES, r.min_sequence).await?;
        self.freshness.wait_for(DELIVERY, r.min_sequence).await?;
        let stats = template_stats(&self.pool, &r.template, &r.team)
            .await
            .map_err(error::database)?;
        Ok(Response::new(pb::GetTemplateStatsResponse { stats }))
    }
}

/// Tasks that create services, per template and per (template, team):
/// how many, how long they took, and time to first deploy — from a task's
/// start to the first successful production deployment of the service it
/// made that finished after it (the delivery read model).
pub async fn template_stats(
    pool: &PgPool,
    template: &str,
    team: &str,
) -> Result<Vec<pb::TemplateStats>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH made AS (
            SELECT t.template, t.team, t.status, t.created_at, t.finished_at,
                   (SELECT min(d.finished_at) FROM delivery_deployments d
                     WHERE t.service <> '' AND d.service = t.service AND d.environment = 'production'
                       AND d.status = 'succeeded' AND d.finished_at >= t.created_at) AS deployed_at
              FROM template_tasks t
             WHERE t.kind = 'create' AND ($1 = '' OR t.template = $1) AND ($2 = '' OR t.team = $2)
         )
         SELECT template, COALESCE(team, '') AS team,
                count(*) AS tasks,
                count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
                    FILTER (WHERE status = 'completed') AS task_p50,
                count(deployed_at) AS first_deploys,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM deployed_at - created_at)) AS deploy_p50,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM deployed_at - created_at)) AS deploy_p90,
                COALESCE((SELECT time_saved_seconds FROM template_versions v WHERE v.name = made.template
                           ORDER BY version DESC LIMIT 1), 0) AS time_saved
           FROM made
          GROUP BY GROUPING SETS ((template), (template, team))
          ORDER BY template, team NULLS FIRST",
    )
    .bind(template)
    .bind(team)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let f = |c: &str| -> Result<f64, sqlx::Error> {
                Ok(r.try_get::<Option<f64>, _>(c)?.unwrap_or(0.0))
            };
            Ok(pb::TemplateStats {
                template: r.try_get("template")?,
                team: r.try_get("team")?,
                tasks: r.try_get::<i64, _>("tasks")? as u32,
                completed: r.try_get::<i64, _>("completed")? as u32,
                failed: r.try_get::<i64, _>("failed")? as u32,
                task_p50_seconds: f("task_p50")?,
                first_deploys: r.try_get::<i64, _>("first_deploys")? as u32,
                first_deploy_p50_seconds: f("deploy_p50")?,
                first_deploy_p90_seconds: f("deploy_p90")?,
                time_saved_seconds: r.try_get::<i64, _>("time_saved")? as u64,
            })
        })
        .collect()
}

/// A dry run's answer: the fetch steps of the task the creation would
/// make, rendered with its parameters; nothing appended, nothing published.
fn dry_run(
    events: &[paved_domain::templates::task::TaskEvent],
    version: &paved_domain::templates::library::TemplateVersion,
) -> Reply<pb::CreateTaskResponse> {
    let Some(paved_domain::templates::task::TaskEvent::Created { parameters, .. }) = events.first()
    else {
        return Err(error::internal(&"a task's creation decided no TaskCreated"));
    };
    let template = version.template().map_err(error::rejection)?;
    let context = serde_json::json!({ "parameters": parameters, "steps": {} });
    let files = templates::render_workspace(&template.steps, &version.files, &context)
        .map_err(|e| error::invalid_field("parameters", e.to_string()))?;
    Ok(Response::new(pb::CreateTaskResponse {
        task_id: String::new(),
        sequence: 0,
        events: 0,
        version: version.version,
        files: files
            .into_iter()
            .map(|(path, content)| pb::RenderedFile { path, content })
            .collect(),
        not_run: template
            .steps
            .iter()
            .filter(|s| !FETCH_ACTIONS.contains(&s.action.as_str()))
            .map(|s| pb::TaskStepDef {
                id: s.id.clone(),
                name: s.name.clone(),
                action: s.action.clone(),
            })
            .collect(),
    }))
}
