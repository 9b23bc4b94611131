//! One run of a template: a task (`paved.templates.task.<id>`).
//!
//! A task is created with the template version it runs, its parameters
//! (checked against the template's forms) and the team it runs for; the
//! task runner then carries out its steps in order, recording each one:
//!
//! ```text
//! step: Pending → Running → Done | Skipped | Failed
//! task: Running → Completed | Failed → (retry) Running
//! ```
//!
//! A step is started before its action runs and finished after, with its
//! output and log, so a runner that restarts finds the step it was in and
//! carries it out again — each action is idempotent, keyed by the task and
//! the step — and never repeats a finished step. A failed task is retried
//! from its failed step.
//!
//! Who: the team's members and admins create and retry tasks; only the
//! runner (an admin principal) records steps. Everything a task does is
//! done for its team: a template whose form has an `owner` must name it.

use serde_json::{Map, Value};

use super::{UPGRADE_ACTION, check_template, parameters};
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::catalog::EntityRef;
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{FieldViolation, Precondition, Rejection};
use crate::validate::{MAX_REASON, Violations};

/// Most bytes of a step's output (JSON) or log.
pub const MAX_STEP_OUTPUT: usize = 64 * 1024;

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Skipped,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    /// Has the step finished (for the steps after it)?
    pub fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Skipped)
    }
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Running,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// A step as the task was created with it (from its template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepDef {
    pub id: String,
    pub name: String,
    pub action: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskStep {
    pub def: StepDef,
    pub status: StepStatus,
    /// How many times it was started.
    pub attempts: u32,
    /// What it produced (`steps.<id>.output` for the steps after it).
    pub output: Value,
    pub log: String,
    /// Why it failed, or why it was skipped.
    pub reason: String,
}

/// What an upgrade task upgrades.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The service made from the template.
    pub service: Name,
    /// The version its repository was made from (the merge's base).
    pub from_version: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub template: Name,
    pub version: u64,
    pub team: Name,
    pub parameters: Map<String, Value>,
    /// Set for an upgrade of a service to `version`.
    pub upgrade: Option<Upgrade>,
    pub steps: Vec<TaskStep>,
    pub status: TaskStatus,
    /// The template's `output`, rendered when the task completed.
    pub output: Value,
}

impl Task {
    /// The index of the step to carry out next (none: all finished).
    pub fn next_step(&self) -> Option<usize> {
        self.steps.iter().position(|s| !s.status.finished())
    }

    pub fn step(&self, id: &str) -> Option<&TaskStep> {
        self.steps.iter().find(|s| s.def.id == id)
    }

    /// What step inputs, `if`s and the output are rendered with:
    /// `parameters`, and `steps.<id>.output` of every finished step.
    pub fn context(&self) -> Value {
        let steps: Map<String, Value> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .map(|s| (s.def.id.clone(), serde_json::json!({ "output": s.output })))
            .collect();
        serde_json::json!({ "parameters": self.parameters, "steps": steps })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TaskCommand {
    /// Run version `version` of `template` (whose `document` it is) with
    /// `parameters`, for `team`.
    Create {
        team: Name,
        template: Name,
        version: u64,
        document: Value,
        parameters: Map<String, Value>,
    },
    /// Merge version `to_version` of `template` into `service`'s repository,
    /// which was made from `from_version` with `parameters`.
    Upgrade {
        team: Name,
        service: Name,
        template: Name,
        from_version: u64,
        to_version: u64,
        parameters: Map<String, Value>,
    },
    /// The runner starts a step.
    Start { step: String },
    /// The runner's step succeeded.
    Finish {
        step: String,
        output: Value,
        log: String,
    },
    /// The step's `if` does not hold.
    Skip { step: String, why: String },
    /// The runner's step failed.
    Fail {
        step: String,
        reason: String,
        log: String,
    },
    /// Every step finished; `output` is the template's, rendered.
    Complete { output: Value },
    /// Run a failed task again from its failed step.
    Retry,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TaskEvent {
    Created {
        template: Name,
        version: u64,
        team: Name,
        parameters: Map<String, Value>,
        steps: Vec<StepDef>,
        upgrade: Option<Upgrade>,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    StepFinished {
        step: String,
        output: Value,
        log: String,
    },
    StepSkipped {
        step: String,
        why: String,
    },
    StepFailed {
        step: String,
        reason: String,
        log: String,
    },
    Retried {
        step: String,
    },
    Completed {
        output: Value,
    },
}

impl TaskEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "TaskCreated",
            Self::StepStarted { .. } => "TaskStepStarted",
            Self::StepFinished { .. } => "TaskStepFinished",
            Self::StepSkipped { .. } => "TaskStepSkipped",
            Self::StepFailed { .. } => "TaskStepFailed",
            Self::Retried { .. } => "TaskRetried",
            Self::Completed { .. } => "TaskCompleted",
        }
    }
}

impl From<TaskEvent> for Event {
    fn from(e: TaskEvent) -> Self {
        Event::Task(e)
    }
}

fn state_error(ctx: &Context<'_>, state: &str, why: impl Into<String>) -> Rejection {
    Rejection::Precondition(Precondition::State {
        what: format!("task {}", ctx.id),
        state: state.to_owned(),
        why: why.into(),
    })
}

fn runner_only(ctx: &Context<'_>) -> Result<(), Rejection> {
    crate::catalog::require_admin(ctx, "record the steps of template tasks")
}

/// May the principal start or retry a task of `team`? Its members and admins.
fn may_run_for(ctx: &Context<'_>, team: &Name) -> Result<(), Rejection> {
    if ctx.principal.acts_for(team) {
        return Ok(());
    }
    Err(Rejection::PermissionDenied(format!(
        "{} may not run templates for team {team}: members of the team and admins only",
        ctx.principal.name
    )))
}

/// The team exists and is not retired.
fn team_in_catalog(ctx: &Context<'_>, team: &Name) -> Result<(), Rejection> {
    match ctx.refs.team(team) {
        None => Err(Rejection::Precondition(Precondition::BadReference {
            field: "team".into(),
            reference: AggregateRef::team(team),
            why: String::new(),
        })),
        Some(t) if t.retired.is_some() => Err(Rejection::Precondition(
            Precondition::RetiredReference(AggregateRef::team(team)),
        )),
        Some(_) => Ok(()),
    }
}

fn bounded(v: &mut Violations, field: &str, output: &Value, log: &str) {
    if output.to_string().len() > MAX_STEP_OUTPUT {
        v.push(field, format!("output: at most {MAX_STEP_OUTPUT} bytes"));
    }
    if log.len() > MAX_STEP_OUTPUT {
        v.push(field, format!("log: at most {MAX_STEP_OUTPUT} bytes"));
    }
}

fn decide_create(
    current: Option<&Task>,
    team: &Name,
    template: &Name,
    version: u64,
    document: &Value,
    given: &Map<String, Value>,
    ctx: &Context<'_>,
) -> Result<Vec<TaskEvent>, Rejection> {
    if !ctx.principal.may_write() {
        return Err(Rejection::PermissionDenied(format!(
            "{} may not run templates: read-only",
            ctx.principal.name
        )));
    }
    may_run_for(ctx, team)?;
    if current.is_some() {
        return Err(Rejection::AlreadyExists(format!("task {}", ctx.id)));
    }
    let checked = check_template(document).map_err(Rejection::Invalid)?;
    if checked.name != template.as_str() {
        return Err(Rejection::invalid(
            "template",
            format!("the document is template {:?}", checked.name),
        ));
    }
    let parameters = parameters(&checked, given).map_err(Rejection::Invalid)?;
    // Everything the task does is for its team: a form's owner names it.
    if let Some(owner) = parameters.get("owner") {
        let named = owner
            .as_str()
            .and_then(|o| EntityRef::parse(o, Some("Group"), "default").ok())
            .and_then(|r| r.team());
        if named.as_ref() != Some(team) {
            return Err(Rejection::Invalid(vec![FieldViolation::new(
                "parameters.owner",
                format!("must be the team the task runs for ({team})"),
            )]));
        }
    }
    team_in_catalog(ctx, team)?;
    Ok(vec![TaskEvent::Created {
        template: template.clone(),
        version,
        team: team.clone(),
        parameters,
        steps: checked
            .steps
            .iter()
            .map(|s| StepDef {
                id: s.id.clone(),
                name: s.name.clone(),
                action: s.action.clone(),
            })
            .collect(),
        upgrade: None,
    }])
}

#[allow(clippy::too_many_arguments)]
fn decide_upgrade(
    current: Option<&Task>,
    team: &Name,
    service: &Name,
    template: &Name,
    from_version: u64,
    to_version: u64,
    parameters: &Map<String, Value>,
    ctx: &Context<'_>,
) -> Result<Vec<TaskEvent>, Rejection> {
    if !ctx.principal.may_write() {
        return Err(Rejection::PermissionDenied(format!(
            "{} may not upgrade services: read-only",
            ctx.principal.name
        )));
    }
    may_run_for(ctx, team)?;
    if current.is_some() {
        return Err(Rejection::AlreadyExists(format!("task {}", ctx.id)));
    }
    if to_version <= from_version {
        return Err(Rejection::invalid(
            "version",
            format!("must be newer than version {from_version}, which {service} was made from"),
        ));
    }
    team_in_catalog(ctx, team)?;
    match ctx.refs.service(service) {
        None => {
            return Err(Rejection::Precondition(Precondition::BadReference {
                field: "service".into(),
                reference: AggregateRef::service(service),
                why: String::new(),
            }));
        }
        Some(s) if s.owner != *team => {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not upgrade service {service}: it is owned by team {}",
                ctx.principal.name, s.owner
            )));
        }
        Some(s) if s.retired.is_some() => {
            return Err(Rejection::Precondition(Precondition::RetiredReference(
                AggregateRef::service(service),
            )));
        }
        Some(_) => {}
    }
    Ok(vec![TaskEvent::Created {
        template: template.clone(),
        version: to_version,
        team: team.clone(),
        parameters: parameters.clone(),
        steps: vec![StepDef {
            id: "upgrade".into(),
            name: format!("Merge version {to_version} into the repository"),
            action: UPGRADE_ACTION.into(),
        }],
        upgrade: Some(Upgrade {
            service: service.clone(),
            from_version,
        }),
    }])
}

impl Aggregate for Option<Task> {
    const KIND: AggregateKind = AggregateKind::Task;
    type Command = TaskCommand;
    type Event = TaskEvent;

    fn references(&self, command: &TaskCommand, _: &References) -> Vec<AggregateRef> {
        match command {
            TaskCommand::Create { team, .. } => vec![AggregateRef::team(team)],
            TaskCommand::Upgrade { team, service, .. } => {
                vec![AggregateRef::team(team), AggregateRef::service(service)]
            }
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &TaskCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<TaskEvent>, Rejection> {
        match command {
            TaskCommand::Create {
                team,
                template,
                version,
                document,
                parameters,
            } => decide_create(
                self.as_ref(),
                team,
                template,
                *version,
                document,
                parameters,
                ctx,
            ),
            TaskCommand::Upgrade {
                team,
                service,
                template,
                from_version,
                to_version,
                parameters,
            } => decide_upgrade(
                self.as_ref(),
                team,
                service,
                template,
                *from_version,
                *to_version,
                parameters,
                ctx,
            ),
            TaskCommand::Retry => {
                let task = self
                    .as_ref()
                    .ok_or_else(|| Rejection::NotFound(format!("task {}", ctx.id)))?;
                if !ctx.principal.may_write() {
                    return Err(Rejection::PermissionDenied(format!(
                        "{} may not retry tasks: read-only",
                        ctx.principal.name
                    )));
                }
                may_run_for(ctx, &task.team)?;
                let failed = task.steps.iter().find(|s| s.status == StepStatus::Failed);
                match (task.status, failed) {
                    (TaskStatus::Failed, Some(s)) => Ok(vec![TaskEvent::Retried {
                        step: s.def.id.clone(),
                    }]),
                    (status, _) => Err(state_error(
                        ctx,
                        status.as_str(),
                        "only a failed task is retried",
                    )),
                }
            }
            step_command => {
                runner_only(ctx)?;
                let task = self
                    .as_ref()
                    .ok_or_else(|| Rejection::NotFound(format!("task {}", ctx.id)))?;
                task.decide_step(step_command, ctx)
            }
        }
    }

    fn evolve(&mut self, event: &TaskEvent) {
        if let TaskEvent::Created {
            template,
            version,
            team,
            parameters,
            steps,
            upgrade,
        } = event
        {
            *self = Some(Task {
                template: template.clone(),
                version: *version,
                team: team.clone(),
                parameters: parameters.clone(),
                upgrade: upgrade.clone(),
                steps: steps
                    .iter()
                    .map(|def| TaskStep {
                        def: def.clone(),
                        status: StepStatus::Pending,
                        attempts: 0,
                        output: Value::Null,
                        log: String::new(),
                        reason: String::new(),
                    })
                    .collect(),
                status: TaskStatus::Running,
                output: Value::Null,
            });
            return;
        }
        let Some(task) = self else {
            return;
        };
        match event {
            TaskEvent::Created { .. } => {}
            TaskEvent::StepStarted { step, attempt } => {
                if let Some(s) = task.steps.iter_mut().find(|s| &s.def.id == step) {
                    s.status = StepStatus::Running;
                    s.attempts = *attempt;
                }
            }
            TaskEvent::StepFinished { step, output, log } => {
                if let Some(s) = task.steps.iter_mut().find(|s| &s.def.id == step) {
                    s.status = StepStatus::Done;
                    s.output = output.clone();
                    s.log = log.clone();
                    s.reason.clear();
                }
            }
            TaskEvent::StepSkipped { step, why } => {
                if let Some(s) = task.steps.iter_mut().find(|s| &s.def.id == step) {
                    s.status = StepStatus::Skipped;
                    s.reason = why.clone();
                }
            }
            TaskEvent::StepFailed { step, reason, log } => {
                if let Some(s) = task.steps.iter_mut().find(|s| &s.def.id == step) {
                    s.status = StepStatus::Failed;
                    s.reason = reason.clone();
                    s.log = log.clone();
                }
                task.status = TaskStatus::Failed;
            }
            TaskEvent::Retried { step } => {
                if let Some(s) = task.steps.iter_mut().find(|s| &s.def.id == step) {
                    s.status = StepStatus::Pending;
                }
                task.status = TaskStatus::Running;
            }
            TaskEvent::Completed { output } => {
                task.status = TaskStatus::Completed;
                task.output = output.clone();
            }
        }
    }

    fn select(event: &Event) -> Option<&TaskEvent> {
        match event {
            Event::Task(e) => Some(e),
            _ => None,
        }
    }
}

impl Task {
    /// The runner's commands: each only in the state it belongs to, and a
    /// repeat of what was already recorded is a no-op (a runner restarted
    /// after recording a step sends it again).
    fn decide_step(
        &self,
        command: &TaskCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<TaskEvent>, Rejection> {
        let find = |id: &str| {
            self.steps
                .iter()
                .position(|s| s.def.id == id)
                .ok_or_else(|| {
                    Rejection::invalid("step", format!("task {} has no step {id:?}", ctx.id))
                })
        };
        let step_error = |s: &TaskStep, why: &str| {
            Rejection::Precondition(Precondition::State {
                what: format!("step {} of task {}", s.def.id, ctx.id),
                state: s.status.as_str().to_owned(),
                why: why.to_owned(),
            })
        };
        let next = self.next_step();
        match command {
            TaskCommand::Start { step } => {
                let i = find(step)?;
                let s = &self.steps[i];
                match s.status {
                    StepStatus::Running => Ok(Vec::new()),
                    StepStatus::Pending
                        if next == Some(i) && self.status == TaskStatus::Running =>
                    {
                        Ok(vec![TaskEvent::StepStarted {
                            step: step.clone(),
                            attempt: s.attempts + 1,
                        }])
                    }
                    _ => Err(step_error(
                        s,
                        "only the task's next step starts, while the task runs",
                    )),
                }
            }
            TaskCommand::Finish { step, output, log } => {
                let i = find(step)?;
                let s = &self.steps[i];
                let mut v = Violations::new();
                bounded(&mut v, "step", output, log);
                v.finish()?;
                match s.status {
                    StepStatus::Running => Ok(vec![TaskEvent::StepFinished {
                        step: step.clone(),
                        output: output.clone(),
                        log: log.clone(),
                    }]),
                    StepStatus::Done if &s.output == output => Ok(Vec::new()),
                    _ => Err(step_error(s, "only a running step finishes")),
                }
            }
            TaskCommand::Skip { step, why } => {
                let i = find(step)?;
                let s = &self.steps[i];
                let mut v = Violations::new();
                v.text("why", why, MAX_REASON);
                v.finish()?;
                match s.status {
                    StepStatus::Skipped => Ok(Vec::new()),
                    StepStatus::Pending | StepStatus::Running if next == Some(i) => {
                        Ok(vec![TaskEvent::StepSkipped {
                            step: step.clone(),
                            why: why.clone(),
                        }])
                    }
                    _ => Err(step_error(s, "only the task's next step is skipped")),
                }
            }
            TaskCommand::Fail { step, reason, log } => {
                let i = find(step)?;
                let s = &self.steps[i];
                let mut v = Violations::new();
                v.text("reason", reason, MAX_REASON);
                bounded(&mut v, "step", &Value::Null, log);
                v.finish()?;
                match s.status {
                    StepStatus::Failed => Ok(Vec::new()),
                    StepStatus::Pending | StepStatus::Running if next == Some(i) => {
                        Ok(vec![TaskEvent::StepFailed {
                            step: step.clone(),
                            reason: reason.clone(),
                            log: log.clone(),
                        }])
                    }
                    _ => Err(step_error(s, "only the task's next step fails")),
                }
            }
            TaskCommand::Complete { output } => {
                let mut v = Violations::new();
                bounded(&mut v, "output", output, "");
                v.finish()?;
                match (self.status, next) {
                    (TaskStatus::Completed, _) => Ok(Vec::new()),
                    (TaskStatus::Running, None) => Ok(vec![TaskEvent::Completed {
                        output: output.clone(),
                    }]),
                    (status, _) => Err(state_error(
                        ctx,
                        status.as_str(),
                        "a task completes when every step has finished",
                    )),
                }
            }
            TaskCommand::Create { .. } | TaskCommand::Upgrade { .. } | TaskCommand::Retry => Err(
                state_error(ctx, self.status.as_str(), "not a step of the runner"),
            ),
        }
    }
}

/// The task id for a client's request: the template's name and 12 hex
/// digits of SHA-256 over the principal and the request id, so a retry of
/// the request addresses the same task and two callers' ids never meet.
pub fn task_id(template: &str, principal: &str, request_id: &str) -> Name {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(principal.as_bytes())
        .chain_update(b"\n")
        .chain_update(request_id.as_bytes())
        .finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut head: String = template.chars().take(63 - 13).collect();
    while head.ends_with('-') {
        head.pop();
    }
    Name::parse(&format!("{head}-{hex}"))
        .or_else(|_| Name::parse(&format!("task-{hex}")))
        .unwrap_or_else(|_| unreachable!("task-<hex> is a DNS label"))
}
