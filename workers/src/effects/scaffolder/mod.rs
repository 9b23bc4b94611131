//! The template task runner: carries out the steps of running tasks, one
//! after another, and records each through the write path (DESIGN.md
//! invariant 5) under its own principal (`worker:templates`).
//!
//! For each running task (the templates read model lists them; the task
//! itself is read from the log):
//!
//! - the next pending step is skipped when its `if` does not hold, else
//!   **started** (an event) before its action runs;
//! - a started step's action runs — again after a restart, which is why
//!   every action is idempotent, keyed by the task and the step id — and
//!   the step is **finished** with its output and log, or **failed** with
//!   the reason (the task then waits for a retry); an action that waits on
//!   someone else (an approval, Argo CD) stays running and is looked at
//!   again at the next scan;
//! - when every step has finished, the template's `output` is rendered and
//!   the task **completed**.
//!
//! The actions ([`actions`]): `fetch:template` and `fetch:plain` render
//! the template version's own files (pure, so the workspace is rendered
//! again whenever a later step needs it, never stored); `publish:git` makes
//! the new repository (one commit, found again by its trailers after a
//! restart); `catalog:register` imports the workspace's `catalog-info.yaml`
//! through the catalog import (a [`Registrar`] the binary gives, so the
//! workers do not depend on the API); `paved:provision` and
//! `paved:argocd-app` go through the provisioning state machine, as the
//! task's team; `debug:log`; and an upgrade task's three-way merge.
//!
//! One runner per database (a [`Lease`]); other replicas stand by.

mod actions;
mod config;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use paved_domain::provisioning::Rules;
use paved_domain::templates::library::{TemplateLibrary, TemplateVersion};
use paved_domain::templates::task::{StepStatus, Task, TaskCommand, TaskStatus};
use paved_domain::templates::{self, Template, UPGRADE_ACTION};
use paved_domain::{Name, Principal};
use paved_eventlog::retry::Backoff;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;

pub use config::{PublishConfig, RunnerTiming, TemplatesConfig};

/// Tasks driven at once.
const CONCURRENCY: usize = 8;
/// Most bytes of a step's log kept (the end is cut, and says so).
const MAX_LOG: usize = 16 * 1024;

/// Registers a `catalog-info.yaml` in the catalog: the catalog import,
/// given by the binary (the workers do not depend on the API).
pub trait Registrar: Send + Sync + 'static {
    fn register<'a>(
        &'a self,
        meta: &'a CommandMeta,
        yaml: &'a str,
    ) -> BoxFuture<'a, Result<Registered, RegisterError>>;
}

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub sequence: u64,
    pub commands: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The catalog said no (the step fails with this).
    #[error("{0}")]
    Refused(String),
    /// Try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// What one action came to.
#[derive(Debug)]
enum Outcome {
    Done {
        output: Value,
        log: String,
    },
    Failed {
        reason: String,
        log: String,
    },
    /// Someone else has to act first (an approval, Argo CD): look again later.
    Waiting(String),
}

/// Something that may work next time (the log, the database or a remote is
/// unavailable): the step stays as it is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(String);

impl From<ExecuteError> for Transient {
    fn from(e: ExecuteError) -> Self {
        Transient(e.to_string())
    }
}

impl From<sqlx::Error> for Transient {
    fn from(e: sqlx::Error) -> Self {
        Transient(format!("postgres: {e}"))
    }
}

impl From<crate::effects::gitops::GitError> for Transient {
    fn from(e: crate::effects::gitops::GitError) -> Self {
        Transient(e.to_string())
    }
}

#[derive(Clone)]
pub struct TaskRunner {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Executor,
    pool: PgPool,
    config: TemplatesConfig,
    /// The provisioning rules requests are decided by.
    rules: Rules,
    /// Environments with an Argo CD, where an application is verified.
    argocd: BTreeSet<String>,
    registrar: Arc<dyn Registrar>,
    principal: Principal,
}

/// What drove a task as far as it goes now.
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// It completed, failed or waits for a retry.
    Finished,
    /// A step waits on someone else.
    Waiting,
    /// Something was unavailable; the next scan tries again.
    Later,
}

impl TaskRunner {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        config: TemplatesConfig,
        rules: Rules,
        argocd: BTreeSet<String>,
        registrar: Arc<dyn Registrar>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                executor,
                pool,
                config,
                rules,
                argocd,
                registrar,
                principal: Principal::admin("worker:templates"),
            }),
        }
    }

    /// Drives running tasks until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let Some(mut lease) =
                Lease::acquire(&self.inner.pool, "paved.templates", &shutdown).await
            else {
                return;
            };
            tracing::info!("template task runner running");
            loop {
                if let Err(e) = lease.check_if_due().await {
                    tracing::warn!(error = %e, "template task runner lost its lease; standing by");
                    break;
                }
                match self.running().await {
                    Ok(ids) => {
                        futures::stream::iter(ids)
                            .for_each_concurrent(CONCURRENCY, |id| {
                                let shutdown = shutdown.clone();
                                let this = &self;
                                async move {
                                    if !shutdown.is_cancelled() {
                                        this.drive(&id).await;
                                    }
                                }
                            })
                            .await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list running template tasks"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(self.inner.config.timing.scan_ms)) => {}
                }
            }
        }
    }

    async fn running(&self) -> Result<Vec<Name>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM template_tasks WHERE status = 'running' ORDER BY last_sequence",
        )
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(ids.iter().filter_map(|i| Name::parse(i).ok()).collect())
    }

    /// Moves task `id` on as far as it goes now.
    pub async fn drive(&self, id: &Name) -> Drive {
        // Each pass records one step transition; a task has at most
        // `MAX_STEPS` steps, each started and finished.
        for _ in 0..(2 * templates::MAX_STEPS + 2) {
            match self.pass(id).await {
                Ok(Some(d)) => return d,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "template task step interrupted; trying again at the next scan");
                    return Drive::Later;
                }
            }
        }
        Drive::Later
    }

    /// One transition of task `id`; `None` when it moved (look again).
    async fn pass(&self, id: &Name) -> Result<Option<Drive>, Transient> {
        let me = &self.inner;
        let Some(task) = me.executor.state::<Option<Task>>(id).await?.state else {
            return Ok(Some(Drive::Finished));
        };
        if task.status != TaskStatus::Running {
            return Ok(Some(Drive::Finished));
        }
        let library = me
            .executor
            .state::<TemplateLibrary>(&task.template)
            .await?
            .state;
        let Some(version) = library.version(task.version).cloned() else {
            return self
                .fail_first_open(
                    id,
                    &task,
                    format!("template {} has no version {}", task.template, task.version),
                )
                .await;
        };
        let template = match version.template() {
            Ok(t) => t,
            Err(e) => return self.fail_first_open(id, &task, e.to_string()).await,
        };
        let context = task.context();
        let Some(i) = task.next_step() else {
            let output = match templates::render_input(&template.output, &context) {
                Ok(o) => o,
                Err(e) => {
                    serde_json::json!({ "error": format!("the template's output does not render: {e}") })
                }
            };
            self.record(id, "complete", TaskCommand::Complete { output })
                .await?;
            return Ok(Some(Drive::Finished));
        };
        let step = &task.steps[i];
        let sid = step.def.id.clone();
        let defined = template.steps.iter().find(|s| s.id == sid);
        if step.status == StepStatus::Pending {
            if let Some(condition) = defined.and_then(|s| s.condition.as_ref()) {
                match templates::condition_holds(condition, &context) {
                    Ok(true) => {}
                    Ok(false) => {
                        let why = format!("if: {condition} is false");
                        self.record(
                            id,
                            &format!("{sid}:skip"),
                            TaskCommand::Skip { step: sid, why },
                        )
                        .await?;
                        return Ok(None);
                    }
                    Err(e) => {
                        let reason = format!("if: {e}");
                        self.fail(id, &sid, step.attempts, reason, String::new())
                            .await?;
                        return Ok(Some(Drive::Finished));
                    }
                }
            }
            let key = format!("{sid}:start:{}", step.attempts + 1);
            self.record(id, &key, TaskCommand::Start { step: sid })
                .await?;
            return Ok(None);
        }
        // Running: carry out its action (again, after a restart).
        let input = match defined {
            Some(d) => match templates::render_input(&d.input, &context) {
                Ok(i) => i,
                Err(e) => {
                    self.fail(id, &sid, step.attempts, e.to_string(), String::new())
                        .await?;
                    return Ok(Some(Drive::Finished));
                }
            },
            None if step.def.action == UPGRADE_ACTION => Value::Null,
            None => {
                let reason = format!("the template has no step {sid}");
                self.fail(id, &sid, step.attempts, reason, String::new())
                    .await?;
                return Ok(Some(Drive::Finished));
            }
        };
        let run = Run {
            id,
            task: &task,
            step: i,
            input: &input,
            version: &version,
            template: &template,
            library: &library,
        };
        tracing::debug!(task = %id, step = %sid, action = %step.def.action, "running step");
        match self.act(&run).await? {
            Outcome::Done { output, log } => {
                let key = format!("{sid}:finish:{}", step.attempts);
                let log = cut(log);
                let finish = TaskCommand::Finish {
                    step: sid.clone(),
                    output,
                    log,
                };
                if let Some(paved_domain::Rejection::Invalid(v)) =
                    self.record(id, &key, finish).await?
                {
                    let reason = format!(
                        "the step's result cannot be recorded: {}",
                        v.iter()
                            .map(|v| format!("{}: {}", v.field, v.description))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    self.fail(id, &sid, step.attempts, reason, String::new())
                        .await?;
                    return Ok(Some(Drive::Finished));
                }
                Ok(None)
            }
            Outcome::Failed { reason, log } => {
                self.fail(id, &sid, step.attempts, reason, log).await?;
                Ok(Some(Drive::Finished))
            }
            Outcome::Waiting(why) => {
                tracing::debug!(task = %id, step = %sid, why = %why, "step waits");
                Ok(Some(Drive::Waiting))
            }
        }
    }

    /// Fails the first step that has not finished (a task whose template
    /// cannot be read cannot run any).
    async fn fail_first_open(
        &self,
        id: &Name,
        task: &Task,
        reason: String,
    ) -> Result<Option<Drive>, Transient> {
        if let Some(i) = task.next_step() {
            let s = &task.steps[i];
            self.fail(id, &s.def.id, s.attempts, reason, String::new())
                .await?;
        }
        Ok(Some(Drive::Finished))
    }

    async fn fail(
        &self,
        id: &Name,
        step: &str,
        attempt: u32,
        reason: String,
        log: String,
    ) -> Result<(), Transient> {
        let mut reason = reason;
        if reason.len() > paved_domain::validate::MAX_REASON {
            let mut end = paved_domain::validate::MAX_REASON - 3;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        self.record(
            id,
            &format!("{step}:fail:{attempt}"),
            TaskCommand::Fail {
                step: step.to_owned(),
                reason,
                log: cut(log),
            },
        )
        .await
        .map(drop)
    }

    /// Records a step through the write path under key `task:<id>:<key>`;
    /// a step recorded before (a restart) is not an error. A refusal is
    /// returned (the next pass reads where the task stands).
    async fn record(
        &self,
        id: &Name,
        key: &str,
        command: TaskCommand,
    ) -> Result<Option<paved_domain::Rejection>, Transient> {
        let me = &self.inner;
        let mut meta = CommandMeta::new(format!("task:{id}:{key}"), me.principal.clone());
        meta.causation_id = format!("task:{id}");
        meta.correlation_id = format!("task:{id}");
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..5 {
            match me
                .executor
                .execute::<Option<Task>>(id, &command, &meta)
                .await
            {
                Ok(_) | Err(ExecuteError::RequestIdReused(_)) => return Ok(None),
                Err(ExecuteError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot record the template step yet");
                    tokio::time::sleep(retry.next_delay()).await;
                }
                Err(ExecuteError::Rejected(r)) => {
                    // Another runner recorded it first, or it no longer
                    // applies: the next pass reads where the task stands.
                    tracing::info!(task = %id, step = key, why = %r, "template step not recorded");
                    return Ok(Some(r));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Transient("the log is unavailable".into()))
    }
}

/// What an action is given.
struct Run<'a> {
    id: &'a Name,
    task: &'a Task,
    /// The index of the step in the task.
    step: usize,
    /// The step's input, rendered.
    input: &'a Value,
    version: &'a TemplateVersion,
    template: &'a Template,
    library: &'a TemplateLibrary,
}

impl Run<'_> {
    fn step_id(&self) -> &str {
        &self.task.steps[self.step].def.id
    }

    /// The idempotency key of this step's side effect.
    fn key(&self, what: &str) -> String {
        format!("task:{}:{}:{what}", self.id, self.step_id())
    }

    /// The workspace the finished fetch steps before this one made.
    fn workspace(&self) -> Result<Vec<(String, String)>, templates::RenderError> {
        let done: Vec<&templates::Step> = self.task.steps[..self.step]
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .filter_map(|s| self.template.steps.iter().find(|d| d.id == s.def.id))
            .collect();
        templates::render_workspace(done, &self.version.files, &self.task.context())
    }
}

/// A log cut to [`MAX_LOG`] bytes.
fn cut(mut log: String) -> String {
    if log.len() > MAX_LOG {
        let mut end = MAX_LOG;
        while !log.is_char_boundary(end) {
            end -= 1;
        }
        log.truncate(end);
        log.push_str("\n… (cut)");
    }
    log
}
