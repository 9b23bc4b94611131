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

use chrono::{DateTime, Utc};
use paved_domain::delivery::{Deployment, DeploymentCommand, DeploymentStatus, Outcome};
use paved_domain::{Name, Principal};
use paved_eventlog::retry::Backoff;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::argocd::{Application, ArgoCd, ArgoError, OperationState};
use crate::lease::Lease;

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
pub(crate) fn token(name: &str, e: &EnvironmentConfig) -> Result<String, String> {
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
    /// deployer runs per database (a [`Lease`]; other replicas stand by), so
    /// two processes never drive the same application. A deployer that finds
    /// its lease lost (PostgreSQL restarted) stops its deployments at their
    /// next wait and stands by again; whoever holds the lease resumes them
    /// from the log.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let Some(mut lease) = Lease::acquire(&this.pool, "paved.deployer", &shutdown).await
            else {
                return;
            };
            let held = shutdown.child_token();
            let lost = this.clone().drive_pending(&mut lease, &held).await;
            match lost {
                None => return,
                Some(e) => {
                    tracing::warn!(error = %e, "Argo CD deployer lost its lease; standing by")
                }
            }
        }
    }

    /// Drives pending deployments while the lease holds; returns why it stopped
    /// (`None`: shutdown).
    async fn drive_pending(
        self: Arc<Self>,
        lease: &mut Lease,
        held: &CancellationToken,
    ) -> Option<crate::lease::LeaseError> {
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        // One queue per Argo CD application, fed in log order: deployments
        // of one application run one after the other in the order they were
        // requested, so the last one requested is the one left running.
        let mut queues: HashMap<String, tokio::sync::mpsc::UnboundedSender<Name>> = HashMap::new();
        let lost = loop {
            if let Err(e) = lease.check_if_due().await {
                break Some(e);
            }
            match self.pending().await {
                Ok(ids) => {
                    for id in ids {
                        if !in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id.clone())
                        {
                            continue;
                        }
                        let Ok(name) = Name::parse(&id) else {
                            continue;
                        };
                        let key = self.queue_of(&name).await;
                        let queue = queues.entry(key).or_insert_with(|| {
                            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                            tasks.spawn(self.clone().run_queue(
                                rx,
                                in_flight.clone(),
                                held.clone(),
                            ));
                            tx
                        });
                        if queue.send(name).is_err() {
                            // Its task ended (shutting down): the next holder resumes it.
                            in_flight
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list pending deployments"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = held.cancelled() => break None,
                () = tokio::time::sleep(Duration::from_millis(self.timing.scan_ms)) => {}
            }
        };
        // Each task stops at its next wait; what it did not record, the next holder resumes.
        held.cancel();
        drop(queues);
        while tasks.join_next().await.is_some() {}
        lost
    }

    /// Drives the deployments of one application, one at a time, in the
    /// order they arrive.
    async fn run_queue(
        self: Arc<Self>,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<Name>,
        in_flight: Arc<Mutex<HashSet<String>>>,
        stop: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = queue.recv() => next,
            };
            let Some(id) = next else { return };
            self.drive(&id, &stop).await;
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id.as_str());
        }
    }

    /// The queue a deployment waits in: its Argo CD application, or (no
    /// environment configured, not readable) a queue of its own.
    async fn queue_of(&self, id: &Name) -> String {
        let d = match self.executor.state::<Option<Deployment>>(id).await {
            Ok(l) => l.state,
            Err(_) => None,
        };
        match d.as_ref().and_then(|d| {
            self.environments
                .get(d.target.environment.as_str())
                .map(|env| (d, env))
        }) {
            Some((d, env)) => format!("app:{}", self.app_name(d, env).await),
            None => format!("deployment:{id}"),
        }
    }

    async fn pending(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            // Log order: a running deployment first (it was started before
            // any requested one), then requests by their commit's sequence.
            "SELECT id FROM delivery_deployments
              WHERE source = 'paved' AND status IN ('requested', 'running')
              ORDER BY status = 'running' DESC, last_sequence",
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
        let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
        for attempt in 0..5u32 {
            match self
                .executor
                .execute::<Option<Deployment>>(id, &command, &meta)
                .await
            {
                Ok(_) => return,
                Err(ExecuteError::Unavailable(e)) => {
                    tracing::warn!(deployment = %id, error = %e, attempt, "cannot record the deployment's step yet");
                    tokio::time::sleep(retry.next_delay()).await;
                }
                // Recorded before (a restart re-derived the step with other
                // details, a later timestamp say): the first record stands.
                Err(ExecuteError::RequestIdReused(_)) => {
                    tracing::info!(deployment = %id, step, "deployment step recorded before");
                    return;
                }
                Err(e) => {
                    tracing::warn!(deployment = %id, error = %e, step, "deployment step refused");
                    return;
                }
            }
        }
    }

    async fn finish(&self, id: &Name, outcome: Outcome) {
        if !outcome.succeeded {
            tracing::info!(deployment = %id, reason = %outcome.message, "deployment failed");
        }
        self.command(id, "finish", DeploymentCommand::Finish(outcome))
            .await;
    }

    /// Records that our operation started (once; later calls are no-ops).
    async fn record_start(&self, d: &mut Deployment, app: &str, started_at: DateTime<Utc>) {
        if d.status != DeploymentStatus::Requested {
            return;
        }
        let start = DeploymentCommand::Start {
            application: app.to_owned(),
            started_at,
        };
        self.command(&d.id, "start", start).await;
        d.status = DeploymentStatus::Running;
        d.started_at = Some(started_at);
    }

    /// Waits one poll interval; false when the worker stops.
    async fn pause(&self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(Duration::from_millis(self.timing.poll_ms)) => true,
        }
    }

    /// The next wait of `retry`; false when it would pass the deadline or
    /// the worker stops.
    async fn backoff(
        &self,
        retry: &mut Backoff,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> bool {
        let wait = retry.next_delay();
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
            // (never one that started before the request was made).
            None => (d.target.rollback_of.is_some()
                && op.revision() == d.target.revision
                && op.started_at >= d.requested_at)
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

    /// What to do next, given what Argo CD says about the application.
    fn judge(&self, d: &Deployment, app: &Application, past_deadline: bool) -> Step {
        let budget = self.timing.budget_secs;
        let health = app.status.health.status.as_str();
        if let Some(op) = Self::ours(d, app) {
            // Ours, found: whatever comes next, its start is on record first.
            let ended = |o| Step::Finish(o, Some(op.started_at));
            if !op.completed() {
                return if past_deadline {
                    ended(failed(
                        format!("still {} after {budget}s", op.phase),
                        Some(op),
                        health,
                    ))
                } else {
                    Step::Follow(op.started_at)
                };
            }
            return match (op.phase.as_str(), health) {
                ("Succeeded", "Healthy") => {
                    ended(outcome(true, op.message.clone(), Some(op), health))
                }
                ("Succeeded", "Degraded" | "Missing") => ended(failed(
                    format!("synced, but the application is {health}"),
                    Some(op),
                    health,
                )),
                ("Succeeded", _) if !past_deadline => Step::Follow(op.started_at),
                ("Succeeded", _) => ended(failed(
                    format!("synced, but not healthy after {budget}s (health {health})"),
                    Some(op),
                    health,
                )),
                _ if op.message.is_empty() => {
                    ended(failed(format!("sync {}", op.phase), Some(op), health))
                }
                _ => ended(failed(op.message.clone(), Some(op), health)),
            };
        }
        if Self::pending_ours(d, app) {
            // Asked for, not picked up by the controller yet.
            return Step::Follow(Utc::now());
        }
        if d.status == DeploymentStatus::Running {
            // Our operation is no longer the application's operation: a
            // newer one (an auto-sync) replaced it. Judge ours by history.
            // Entries from before Paved's call are not ours: not before the
            // request, and (clock skew between Paved and Argo CD allowed
            // for) not before the recorded start of our operation.
            let started = d.started_at.map_or(d.requested_at, |s| {
                (s - chrono::Duration::seconds(5)).max(d.requested_at)
            });
            let deployed = app.status.history.iter().rev().find(|h| {
                h.revision == d.target.revision
                    && h.deploy_started_at
                        .or(h.deployed_at)
                        .is_some_and(|t| t >= started)
            });
            if let Some(h) = deployed {
                let op = OperationState {
                    phase: "Succeeded".into(),
                    started_at: h.deploy_started_at.unwrap_or(started),
                    finished_at: h.deployed_at,
                    sync_result: Some(super::argocd::SyncResult {
                        revision: h.revision.clone(),
                    }),
                    ..OperationState::default()
                };
                let note = "deployed (per history); a newer operation has run since";
                return Step::Finish(outcome(true, note.to_owned(), Some(&op), health), None);
            }
            let by = match app.status.operation_state.as_ref() {
                Some(o) if o.operation.initiated_by.automated => "an automated sync".to_owned(),
                Some(o) => format!("an operation by {:?}", o.operation.initiated_by.username),
                None => "another operation".to_owned(),
            };
            return Step::Finish(
                failed(format!("replaced by {by} before it finished"), None, health),
                None,
            );
        }
        match &d.target.rollback_of {
            None => Step::Start { history: None },
            Some(_) => match app
                .status
                .history
                .iter()
                .rev()
                .find(|h| h.revision == d.target.revision)
            {
                Some(h) => Step::Start {
                    history: Some(h.id),
                },
                None => Step::Finish(
                    failed(
                        format!(
                            "{} has no history entry for revision {:?} to roll back to",
                            app.metadata.name, d.target.revision
                        ),
                        None,
                        health,
                    ),
                    None,
                ),
            },
        }
    }

    /// The span driving deployment `id`: it continues the trace of the
    /// command that requested it (its first commit's producer span), so the
    /// request, the Argo CD calls and the recorded outcome are one trace.
    async fn drive_span(&self, id: &Name) -> tracing::Span {
        let subject = self
            .executor
            .log()
            .subject(paved_domain::AggregateKind::Deployment, id);
        let span = tracing::info_span!(
            parent: None,
            "deploy",
            otel.name = "deploy",
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %subject,
            paved.deployment.id = %id,
        );
        match self.executor.log().first_on_subject(&subject).await {
            Ok(Some(m)) => paved_eventlog::trace::set_remote_parent(
                &span,
                &paved_eventlog::TraceContext::from_headers(Some(&m.headers)),
            ),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "the request's trace is not readable"),
        }
        span
    }

    async fn drive(&self, id: &Name, stop: &CancellationToken) {
        let d = match self.executor.state::<Option<Deployment>>(id).await {
            Ok(l) => match l.state {
                Some(d) if !d.status.finished() && d.source == "paved" => d,
                // Finished (the list of pending ones lags behind) or not ours.
                _ => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployment");
                return;
            }
        };
        let span = self.drive_span(id).await;
        self.drive_unfinished(id, d, stop).instrument(span).await
    }

    async fn drive_unfinished(&self, id: &Name, mut d: Deployment, stop: &CancellationToken) {
        let Some(env) = self.environments.get(d.target.environment.as_str()) else {
            let reason = format!(
                "no Argo CD is configured for environment {:?} (PAVED_ARGOCD_CONFIG)",
                d.target.environment.as_str()
            );
            return self.finish(id, failed(reason, None, "")).await;
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
        let budget = self.timing.budget_secs;
        let deadline = Instant::now() + Duration::from_secs(budget);
        let mut backoff = Backoff::new(
            Duration::from_millis(self.timing.retry_min_ms.max(1)),
            Duration::from_millis(self.timing.retry_max_ms.max(1)),
        );
        loop {
            // Busy, 5xx, timeouts: back off and try again within the budget.
            let (retry, health) = match env.client.application(&app).await {
                Err(e) => (e, String::new()),
                Ok(application) => match self.judge(&d, &application, Instant::now() >= deadline) {
                    Step::Finish(outcome, started_at) => {
                        if let Some(at) = started_at {
                            self.record_start(&mut d, &app, at).await;
                        }
                        return self.finish(id, outcome).await;
                    }
                    Step::Follow(started_at) => {
                        self.record_start(&mut d, &app, started_at).await;
                        if !self.pause(stop).await {
                            return;
                        }
                        continue;
                    }
                    Step::Start { history } => {
                        let call = match history {
                            None => env.client.sync(&app, &d.target.revision, id.as_str()).await,
                            Some(h) => env.client.rollback(&app, h).await,
                        };
                        match call {
                            Ok(_) => {
                                tracing::info!(app = %app, revision = %d.target.revision, "Argo CD operation started");
                                self.record_start(&mut d, &app, Utc::now()).await;
                                backoff.reset();
                                continue;
                            }
                            Err(e) => (e, application.status.health.status),
                        }
                    }
                },
            };
            if !retry.retryable() {
                return self
                    .finish(id, failed(retry.to_string(), None, &health))
                    .await;
            }
            if self.backoff(&mut backoff, deadline, stop).await {
                continue;
            }
            if stop.is_cancelled() {
                return;
            }
            let reason = match retry {
                ArgoError::InProgress => {
                    format!("{app}: another operation stayed in progress for {budget}s")
                }
                e => format!("{e} (gave up after {budget}s)"),
            };
            return self.finish(id, failed(reason, None, &health)).await;
        }
    }
}

/// The deployer's next move.
enum Step {
    /// Our operation is requested or running (since then): record the
    /// start if not yet, and look again later.
    Follow(DateTime<Utc>),
    /// Ours is over, or cannot be: record this outcome (after the start of
    /// our operation, when it was found and the start is not on record yet).
    Finish(Outcome, Option<DateTime<Utc>>),
    /// Not started: sync, or roll back to this history entry.
    Start { history: Option<i64> },
}

/// How an operation ended, as recorded.
fn outcome(succeeded: bool, message: String, op: Option<&OperationState>, health: &str) -> Outcome {
    Outcome {
        succeeded,
        revision: op.map(|o| o.revision().to_owned()).unwrap_or_default(),
        phase: op.map(|o| o.phase.clone()).unwrap_or_default(),
        health: health.to_owned(),
        message,
        finished_at: op.and_then(|o| o.finished_at).unwrap_or_else(Utc::now),
    }
}

fn failed(message: String, op: Option<&OperationState>, health: &str) -> Outcome {
    outcome(false, message, op, health)
}
