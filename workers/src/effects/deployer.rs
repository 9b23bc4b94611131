//! The Argo CD deployer: carries out `DeploymentRequested` and records
//! `DeploymentStarted`, then `DeploymentSucceeded` or `DeploymentFailed`.
//!
//! Restart-safe by construction: the deployment's state is read from its
//! aggregate in the log, and our Argo CD operation is recognised by its
//! `operation.info` entry `paved-deployment=<id>` (rollbacks, which take no
//! info, by revision and start time). So after a crash before the call the
//! worker calls; after the call (with or without `DeploymentStarted`) it
//! finds the operation and follows it; Start and Finish are idempotent in
//! the domain, so at most one sync and exactly one outcome per request.
//!
//! Argo CD has no queue: syncs of one application are serialised here, and
//! "another operation is already in progress" (someone else's sync) is
//! retried with jittered backoff within the budget, like 5xx and timeouts;
//! past the budget the deployment fails with the reason. An operation of
//! ours that a newer one (an auto-sync) replaced is judged from
//! `status.history`, never from the newer operation's outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use paved_domain::delivery::{Deployment, DeploymentCommand, DeploymentStatus, Outcome};
use paved_domain::{Name, Principal};
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::argocd::{Application, ArgoCd, ArgoError, OperationState};

/// The annotation naming a service's Argo CD application (as Backstage's
/// Argo CD plugin reads it).
pub const APP_ANNOTATION: &str = "argocd/app-name";

/// `PAVED_ARGOCD_CONFIG`: where each environment's Argo CD is.
///
/// ```yaml
/// environments:
///   production:
///     url: https://argocd.example.com
///     token_env: ARGOCD_PRODUCTION_TOKEN   # or token_file: /run/secrets/argocd
///     app_name: "{service}-{environment}"  # when the service has no argocd/app-name
/// timing:                                  # all optional
///   poll_ms: 1000
///   budget_secs: 600
///   retry_min_ms: 500
///   retry_max_ms: 30000
///   request_timeout_secs: 10
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgoConfig {
    pub environments: BTreeMap<String, EnvironmentConfig>,
    #[serde(default)]
    pub timing: Timing,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub url: String,
    /// The variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_app_name")]
    pub app_name: String,
}

impl std::fmt::Debug for EnvironmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentConfig")
            .field("url", &self.url)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("app_name", &self.app_name)
            .finish()
    }
}

fn default_app_name() -> String {
    "{service}-{environment}".to_owned()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// How often a running operation is looked at.
    pub poll_ms: u64,
    /// How long a deployment may wait for Argo CD (busy, down) and run.
    pub budget_secs: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub request_timeout_secs: u64,
    /// How often pending deployments are looked for.
    pub scan_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll_ms: 1000,
            budget_secs: 600,
            retry_min_ms: 500,
            retry_max_ms: 30_000,
            request_timeout_secs: 10,
            scan_ms: 1000,
        }
    }
}

impl ArgoConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The token of one environment, from its variable or file (never logged).
fn token(name: &str, e: &EnvironmentConfig) -> Result<String, String> {
    match (&e.token_env, &e.token_file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("environment {name}: variable {var} is not set"))
        }
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|t| t.trim().to_owned())
            .map_err(|err| format!("environment {name}: cannot read {}: {err}", file.display())),
        _ => Err(format!(
            "environment {name}: give exactly one of token_env and token_file"
        )),
    }
}

struct Environment {
    client: ArgoCd,
    app_name: String,
}

pub struct Deployer {
    executor: Executor,
    pool: PgPool,
    environments: Arc<HashMap<String, Environment>>,
    timing: Timing,
    principal: Principal,
    /// One lock per Argo CD application: never two operations at once.
    apps: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Deployer {
    pub fn new(executor: Executor, pool: PgPool, config: &ArgoConfig) -> Result<Self, String> {
        let timeout = Duration::from_secs(config.timing.request_timeout_secs.max(1));
        let mut environments = HashMap::new();
        for (name, e) in &config.environments {
            let client =
                ArgoCd::new(&e.url, token(name, e)?, timeout).map_err(|e| e.to_string())?;
            environments.insert(
                name.clone(),
                Environment {
                    client,
                    app_name: e.app_name.clone(),
                },
            );
        }
        Ok(Self {
            executor,
            pool,
            environments: Arc::new(environments),
            timing: config.timing.clone(),
            principal: Principal::admin("worker:argocd"),
            apps: Arc::default(),
        })
    }

    /// Looks for pending deployments and drives each until `shutdown`. One
    /// deployer runs per database (an advisory lock; other replicas stand by),
    /// so two processes never drive the same application.
    pub async fn run(self, shutdown: CancellationToken) {
        let _lock = tokio::select! {
            () = shutdown.cancelled() => return,
            lock = self.lock() => match lock {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::error!(error = %e, "Argo CD deployer cannot take its lock; not running");
                    return;
                }
            },
        };
        let this = Arc::new(self);
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            match this.pending().await {
                Ok(ids) => {
                    for id in ids {
                        if !in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id.clone())
                        {
                            continue;
                        }
                        let (this, in_flight, stop) =
                            (this.clone(), in_flight.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            if let Ok(name) = Name::parse(&id) {
                                this.drive(&name, &stop).await;
                            }
                            in_flight
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list pending deployments"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(this.timing.scan_ms)) => {}
            }
        }
        // Each task stops at its next wait; what it did not record, a restart resumes.
        while tasks.join_next().await.is_some() {}
    }

    async fn lock(&self) -> Result<sqlx::PgConnection, sqlx::Error> {
        let mut conn = self.pool.acquire().await?.detach();
        let mut told = false;
        loop {
            let got: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('paved.deployer'))")
                    .fetch_one(&mut conn)
                    .await?;
            if got {
                return Ok(conn);
            }
            if !told {
                tracing::info!("another process runs the Argo CD deployer; standing by");
                told = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn pending(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM delivery_deployments
              WHERE source = 'paved' AND status IN ('requested', 'running')
              ORDER BY requested_at",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The service's Argo CD application in `environment`.
    async fn app_name(&self, d: &Deployment, env: &Environment) -> String {
        let annotated: Option<String> =
            sqlx::query_scalar("SELECT annotations ->> $2 FROM catalog_services WHERE name = $1")
                .bind(d.target.service.as_str())
                .bind(APP_ANNOTATION)
                .fetch_optional(&self.pool)
                .await
                .ok()
                .flatten()
                .flatten();
        annotated.filter(|a| !a.is_empty()).unwrap_or_else(|| {
            env.app_name
                .replace("{service}", d.target.service.as_str())
                .replace("{environment}", d.target.environment.as_str())
        })
    }

    async fn command(&self, id: &Name, step: &str, command: DeploymentCommand) {
        let mut meta = CommandMeta::new(format!("argocd:{step}:{id}"), self.principal.clone());
        meta.causation_id = id.to_string();
        for attempt in 0..5u32 {
            match self
                .executor
                .execute::<Option<Deployment>>(id, &command, &meta)
                .await
            {
                Ok(_) => return,
                Err(ExecuteError::Unavailable(e)) => {
                    tracing::warn!(deployment = %id, error = %e, attempt, "cannot record the deployment's step yet");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(deployment = %id, error = %e, step, "deployment step refused");
                    return;
                }
            }
        }
    }

    async fn fail(&self, id: &Name, message: String, op: Option<&OperationState>, health: &str) {
        tracing::info!(deployment = %id, reason = %message, "deployment failed");
        let outcome = Outcome {
            succeeded: false,
            revision: op.map(|o| o.revision().to_owned()).unwrap_or_default(),
            phase: op.map(|o| o.phase.clone()).unwrap_or_default(),
            health: health.to_owned(),
            message,
            finished_at: op.and_then(|o| o.finished_at).unwrap_or_else(Utc::now),
        };
        self.command(id, "finish", DeploymentCommand::Finish(outcome))
            .await;
    }

    async fn succeed(&self, id: &Name, op: &OperationState, health: &str, message: String) {
        let outcome = Outcome {
            succeeded: true,
            revision: op.revision().to_owned(),
            phase: op.phase.clone(),
            health: health.to_owned(),
            message,
            finished_at: op.finished_at.unwrap_or_else(Utc::now),
        };
        self.command(id, "finish", DeploymentCommand::Finish(outcome))
            .await;
    }

    /// Jittered exponential backoff; false when it would pass the deadline
    /// or the worker stops.
    async fn backoff(
        &self,
        attempt: &mut u32,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> bool {
        let base = self
            .timing
            .retry_min_ms
            .saturating_mul(1 << (*attempt).min(16));
        let capped = base.min(self.timing.retry_max_ms).max(1);
        let wait = Duration::from_millis(capped / 2 + rand::random_range(0..=capped / 2));
        *attempt += 1;
        if Instant::now() + wait > deadline {
            return false;
        }
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Is `op` the operation this deployment started?
    fn ours<'a>(d: &Deployment, app: &'a Application) -> Option<&'a OperationState> {
        let op = app.status.operation_state.as_ref()?;
        match op.paved_deployment() {
            Some(id) => (id == d.id.as_str()).then_some(op),
            // Rollbacks carry no info: ours if it runs our revision and
            // started after we asked for it.
            None => (d.target.rollback_of.is_some()
                && op.revision() == d.target.revision
                && op.started_at >= d.requested_at - chrono::Duration::seconds(5))
            .then_some(op),
        }
    }

    /// Is the application's requested (not yet running) operation ours?
    fn pending_ours(d: &Deployment, app: &Application) -> bool {
        app.operation.as_ref().is_some_and(|o| {
            match o.info.iter().find(|i| i.name == super::argocd::INFO_NAME) {
                Some(i) => i.value == d.id.as_str(),
                None => {
                    d.target.rollback_of.is_some()
                        && o.sync
                            .as_ref()
                            .is_some_and(|s| s.revision == d.target.revision)
                }
            }
        })
    }

    #[tracing::instrument(skip_all, fields(deployment = %id))]
    async fn drive(&self, id: &Name, stop: &CancellationToken) {
        let mut d = match self.executor.state::<Option<Deployment>>(id).await {
            Ok(l) => match l.state {
                Some(d) if !d.status.finished() && d.source == "paved" => d,
                _ => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployment");
                return;
            }
        };
        let Some(env) = self.environments.get(d.target.environment.as_str()) else {
            return self
                .fail(
                    id,
                    format!(
                        "no Argo CD is configured for environment {:?} (PAVED_ARGOCD_CONFIG)",
                        d.target.environment.as_str()
                    ),
                    None,
                    "",
                )
                .await;
        };
        let app = self.app_name(&d, env).await;
        let lock = self
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.clone())
            .or_default()
            .clone();
        let _serialised = tokio::select! {
            () = stop.cancelled() => return,
            g = lock.lock() => g,
        };
        let deadline = Instant::now() + Duration::from_secs(self.timing.budget_secs);
        let mut attempt = 0;
        let mut last_error;
        loop {
            let application = match env.client.application(&app).await {
                Ok(a) => a,
                Err(e) if e.retryable() => {
                    last_error = e.to_string();
                    if self.backoff(&mut attempt, deadline, stop).await {
                        continue;
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    return self
                        .fail(
                            id,
                            format!("{last_error} (gave up after {}s)", self.timing.budget_secs),
                            None,
                            "",
                        )
                        .await;
                }
                Err(e) => return self.fail(id, e.to_string(), None, "").await,
            };
            let health = application.status.health.status.clone();
            if let Some(op) = Self::ours(&d, &application) {
                if d.status == DeploymentStatus::Requested {
                    // We called before a crash, or just now: record the start.
                    self.command(
                        id,
                        "start",
                        DeploymentCommand::Start {
                            application: app.clone(),
                            started_at: op.started_at,
                        },
                    )
                    .await;
                    d.status = DeploymentStatus::Running;
                    d.started_at = Some(op.started_at);
                }
                if op.completed() {
                    match (op.phase.as_str(), health.as_str()) {
                        ("Succeeded", "Healthy") => {
                            return self.succeed(id, op, &health, op.message.clone()).await;
                        }
                        ("Succeeded", "Degraded" | "Missing") => {
                            return self
                                .fail(
                                    id,
                                    format!("synced, but the application is {health}"),
                                    Some(op),
                                    &health,
                                )
                                .await;
                        }
                        ("Succeeded", _) if Instant::now() < deadline => {} // still progressing
                        ("Succeeded", _) => {
                            return self
                                .fail(
                                    id,
                                    format!(
                                        "synced, but not healthy after {}s (health {health})",
                                        self.timing.budget_secs
                                    ),
                                    Some(op),
                                    &health,
                                )
                                .await;
                        }
                        _ => {
                            let message = if op.message.is_empty() {
                                format!("sync {}", op.phase)
                            } else {
                                op.message.clone()
                            };
                            return self.fail(id, message, Some(op), &health).await;
                        }
                    }
                } else if Instant::now() >= deadline {
                    return self
                        .fail(
                            id,
                            format!("still {} after {}s", op.phase, self.timing.budget_secs),
                            Some(op),
                            &health,
                        )
                        .await;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(self.timing.poll_ms)) => {}
                }
                continue;
            }
            if Self::pending_ours(&d, &application) {
                // Asked for, not picked up by the controller yet.
                if d.status == DeploymentStatus::Requested {
                    let now = Utc::now();
                    self.command(
                        id,
                        "start",
                        DeploymentCommand::Start {
                            application: app.clone(),
                            started_at: now,
                        },
                    )
                    .await;
                    d.status = DeploymentStatus::Running;
                    d.started_at = Some(now);
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(self.timing.poll_ms)) => {}
                }
                continue;
            }
            if d.status == DeploymentStatus::Running {
                // Our operation is no longer the application's operation: a
                // newer one (an auto-sync) replaced it. Judge ours by history.
                let started = d.started_at.unwrap_or(d.requested_at) - chrono::Duration::seconds(5);
                let deployed = application.status.history.iter().rev().find(|h| {
                    h.revision == d.target.revision
                        && h.deploy_started_at
                            .or(h.deployed_at)
                            .is_some_and(|t| t >= started)
                });
                let current = application.status.operation_state.as_ref();
                return match deployed {
                    Some(h) => {
                        let op = OperationState {
                            phase: "Succeeded".into(),
                            started_at: h.deploy_started_at.unwrap_or(started),
                            finished_at: h.deployed_at,
                            sync_result: Some(super::argocd::SyncResult {
                                revision: h.revision.clone(),
                            }),
                            ..OperationState::default()
                        };
                        let note =
                            "deployed (per history); a newer operation has run since".to_owned();
                        self.succeed(id, &op, &health, note).await
                    }
                    None => {
                        let by = current
                            .map(|o| {
                                if o.operation.initiated_by.automated {
                                    "an automated sync".to_owned()
                                } else {
                                    format!(
                                        "an operation by {:?}",
                                        o.operation.initiated_by.username
                                    )
                                }
                            })
                            .unwrap_or_else(|| "another operation".to_owned());
                        self.fail(
                            id,
                            format!("replaced by {by} before it finished"),
                            None,
                            &health,
                        )
                        .await
                    }
                };
            }
            // Not started: start it.
            let call = match &d.target.rollback_of {
                None => env.client.sync(&app, &d.target.revision, id.as_str()).await,
                Some(_) => {
                    let entry = application
                        .status
                        .history
                        .iter()
                        .rev()
                        .find(|h| h.revision == d.target.revision);
                    match entry {
                        Some(h) => env.client.rollback(&app, h.id).await,
                        None => {
                            return self
                                .fail(id, format!("{app} has no history entry for revision {:?} to roll back to", d.target.revision), None, &health)
                                .await;
                        }
                    }
                }
            };
            match call {
                Ok(_) => {
                    tracing::info!(app = %app, revision = %d.target.revision, "Argo CD operation started");
                    let now = Utc::now();
                    self.command(
                        id,
                        "start",
                        DeploymentCommand::Start {
                            application: app.clone(),
                            started_at: now,
                        },
                    )
                    .await;
                    d.status = DeploymentStatus::Running;
                    d.started_at = Some(now);
                    attempt = 0;
                }
                Err(e) if e.retryable() => {
                    last_error = e.to_string();
                    if !self.backoff(&mut attempt, deadline, stop).await {
                        if stop.is_cancelled() {
                            return;
                        }
                        let reason = match e {
                            ArgoError::InProgress => format!(
                                "{app}: another operation stayed in progress for {}s",
                                self.timing.budget_secs
                            ),
                            _ => {
                                format!("{last_error} (gave up after {}s)", self.timing.budget_secs)
                            }
                        };
                        return self.fail(id, reason, None, &health).await;
                    }
                }
                Err(e) => return self.fail(id, e.to_string(), None, &health).await,
            }
        }
    }
}
