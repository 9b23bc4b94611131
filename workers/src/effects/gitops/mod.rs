//! The GitOps writer: plans provisioning requests against the repository
//! Argo CD syncs from, and commits the approved plans to it.
//!
//! It drives each open request from its tenancy in the log (the read model
//! only says which ones are open):
//!
//! - **Requested**: render the resource (the pure renderer), compare with
//!   the branch's files, and record the plan (files, unified diff, drift)
//!   through the write path; the policy in the plan says who approves.
//! - **Approved**: record that applying starts, then apply.
//! - **Applying**: look for a commit on the branch whose `Paved-Request`
//!   trailer names the request (a restart after the push finds it and
//!   records it: one commit, one outcome); otherwise write the plan's files,
//!   commit with the trailers and push. A push refused as not fast-forward
//!   is fetched and retried on the new head — unless the new commits touch
//!   the plan's files, in which case the request is planned again against
//!   them. Never a force push.
//!
//! The repository is handled with the `git` command (as Argo CD itself
//! does): every transport and credential helper works, and nothing links
//! libgit2. HTTPS tokens reach git through `GIT_CONFIG_*` variables (never
//! the command line); SSH keys through `GIT_SSH_COMMAND`. See [`repo`].
//!
//! - [`config`] reads `PAVED_PROVISIONING_CONFIG`.
//! - [`repo`] is the writer's clone (plumbing: no work tree).

mod config;
mod repo;

use std::sync::Arc;
use std::time::Duration;

use paved_domain::provisioning::render;
use paved_domain::provisioning::{
    Action, Plan, PlannedFile, ProvisioningCommand, RequestState, Rules, Tenancy, request_id,
};
use paved_domain::{Name, Principal};
use paved_eventlog::retry::Backoff;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;

pub use config::{GitTiming, ProvisioningConfig, RepositoryConfig};
pub use repo::{GitError, Repo};

/// The trailer naming the request a commit applies.
pub const REQUEST_TRAILER: &str = "Paved-Request";
/// The trailer naming the plan (its base and a digest of its files).
pub const PLAN_TRAILER: &str = "Paved-Plan";

/// The digest of a plan: its base and its files, for the `Paved-Plan` trailer.
pub fn plan_digest(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(plan.base.as_bytes());
    for f in &plan.files {
        h.update(b"\0");
        h.update(f.path.as_bytes());
        h.update(b"\0");
        match &f.content {
            Some(c) => h.update(c.as_bytes()),
            None => h.update(b"\x01deleted"),
        }
    }
    hex_lower(&h.finalize()[..12])
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct GitopsWriter {
    /// Each environment's Argo CD (`PAVED_ARGOCD_CONFIG`): an applied
    /// Application is verified there.
    argocd: std::collections::HashMap<String, super::argocd::ArgoCd>,
    executor: Executor,
    pool: PgPool,
    rules: Rules,
    repository: RepositoryConfig,
    timing: GitTiming,
    principal: Principal,
}

/// What one pass over a request did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Its state moved; look at it again at once.
    Moved,
    /// Nothing more to do now (waiting for an approval, or finished).
    Wait,
}

impl GitopsWriter {
    pub fn new(executor: Executor, pool: PgPool, config: &ProvisioningConfig) -> Option<Self> {
        let repository = config.repository.clone()?;
        Some(Self {
            argocd: Default::default(),
            executor,
            pool,
            rules: config.rules(),
            repository,
            timing: config.timing.clone(),
            principal: Principal::admin("worker:gitops"),
        })
    }

    /// Verifies applied Argo CD Applications in the environments `argocd`
    /// names (the others stay applied).
    pub fn with_argocd(mut self, argocd: &super::deployer::ArgoConfig) -> Result<Self, String> {
        let timeout = Duration::from_secs(argocd.timing.request_timeout_secs.max(1));
        for (name, e) in &argocd.environments {
            let token = super::deployer::token(name, e)?;
            let client =
                super::argocd::ArgoCd::new(&e.url, token, timeout).map_err(|e| e.to_string())?;
            self.argocd.insert(name.clone(), client);
        }
        Ok(self)
    }

    /// Drives open requests until `shutdown`; one writer per database (a
    /// [`Lease`]; other replicas stand by). A writer that lost its lease
    /// stops after the request in hand and stands by; the next holder goes
    /// on from the log (and the repository's trailers).
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut retry = Backoff::reconnect();
        loop {
            let Some(mut lease) = Lease::acquire(&this.pool, "paved.gitops", &shutdown).await
            else {
                return;
            };
            let repo = match Repo::open(&this.repository).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "GitOps writer cannot open the repository; retrying");
                    drop(lease);
                    if !retry.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            retry.reset();
            // Resources changed after this sequence are not yet in the catalog.
            let mut cursor = 0i64;
            tracing::info!(repository = %this.repository.url, branch = %this.repository.branch, "GitOps writer running");
            loop {
                if let Err(e) = lease.check_if_due().await {
                    tracing::warn!(error = %e, "GitOps writer lost its lease; standing by");
                    break;
                }
                match this.pending().await {
                    Ok(open) if open.is_empty() => {}
                    Ok(open) => {
                        // One fetch per scan: plans are made against it, and
                        // a push it is stale for is refused and fetched again.
                        if let Err(e) = repo.fetch().await {
                            tracing::warn!(error = %e, "cannot fetch the GitOps repository; retrying at the next scan");
                        }
                        for (team, number) in open {
                            if shutdown.is_cancelled() {
                                return;
                            }
                            this.drive(&repo, &team, number as u64).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list open provisioning requests"),
                }
                if let Err(e) = this.reconcile(&mut cursor).await {
                    tracing::warn!(error = %e, "cannot bring the catalog in line with provisioning");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(this.timing.scan_ms)) => {}
                }
            }
        }
    }

    /// Brings the catalog in line with what is provisioned: a live resource
    /// is a `Resource` entity (stored again when a newer commit applied it),
    /// a decommissioned one is removed; and a live database of a retired
    /// service gets a decommission request (proposed: the policy decides
    /// who approves it). Every step is idempotent; `cursor` is the last
    /// resource row's sequence looked at.
    async fn reconcile(&self, cursor: &mut i64) -> Result<(), sqlx::Error> {
        let changed: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT team, resource, status, last_sequence FROM provisioning_resources
              WHERE last_sequence > $1 AND status IN ('live', 'decommissioned')
              ORDER BY last_sequence",
        )
        .bind(*cursor)
        .fetch_all(&self.pool)
        .await?;
        for (team, resource, status, seq) in changed {
            let Ok(team) = Name::parse(&team) else {
                continue;
            };
            let Ok(tenancy) = self.executor.state::<Tenancy>(&team).await else {
                return Ok(());
            };
            let Some(res) = tenancy.state.resources.get(&resource) else {
                continue;
            };
            let entity = render::resource_entity(
                team.as_str(),
                &res.spec,
                &request_id(team.as_str(), res.applied_by.unwrap_or_default()),
                res.commit.as_deref().unwrap_or_default(),
            );
            let Ok(entity_ref) = paved_domain::catalog::entity_ref(&entity) else {
                continue;
            };
            let command = if status == "live" {
                paved_domain::catalog::EntityCommand::Store { document: entity }
            } else {
                paved_domain::catalog::EntityCommand::Remove
            };
            let key = format!(
                "gitops:catalog:{team}:{resource}:{}",
                res.commit.as_deref().unwrap_or_default()
            );
            let meta = CommandMeta::new(key, self.principal.clone());
            match self
                .executor
                .execute::<Option<paved_domain::catalog::Entity>>(&entity_ref.id(), &command, &meta)
                .await
            {
                Ok(_) | Err(ExecuteError::RequestIdReused(_)) => {}
                // Removing what is not there: nothing to do.
                Err(ExecuteError::Rejected(paved_domain::Rejection::NotFound(_))) => {}
                Err(ExecuteError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot record the resource in the catalog yet");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(resource = %resource, error = %e, "the catalog refused the resource")
                }
            }
            *cursor = seq;
        }
        let orphaned: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.team, r.resource FROM provisioning_resources r
               JOIN catalog_services s ON s.name = r.service
              WHERE r.status = 'live' AND r.open_request IS NULL AND s.retired_reason IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for (team, resource) in orphaned {
            let Ok(team) = Name::parse(&team) else {
                continue;
            };
            let Ok(tenancy) = self.executor.state::<Tenancy>(&team).await else {
                return Ok(());
            };
            let Some(res) = tenancy.state.resources.get(&resource) else {
                continue;
            };
            let command = ProvisioningCommand::Request {
                team: team.clone(),
                spec: res.spec.clone(),
                action: Action::Decommission,
                rules: Box::new(self.rules.clone()),
            };
            let key = format!(
                "gitops:retired:{team}:{resource}:{}",
                res.commit.as_deref().unwrap_or_default()
            );
            let mut meta = CommandMeta::new(key, self.principal.clone());
            meta.reason = "its service was retired".into();
            match self
                .executor
                .execute::<Tenancy>(&team, &command, &meta)
                .await
            {
                Ok(_) => {
                    tracing::info!(team = %team, resource = %resource, "proposed the decommission of a retired service's resource")
                }
                Err(ExecuteError::RequestIdReused(_)) => {}
                Err(e) => {
                    tracing::warn!(team = %team, resource = %resource, error = %e, "cannot propose the decommission")
                }
            }
        }
        Ok(())
    }

    /// The catalog's view of `team` the renderer needs: its live services' repositories.
    async fn team_context(&self, team: &Name) -> Result<render::TeamContext, sqlx::Error> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, repository_url FROM catalog_services
              WHERE owner = $1 AND retired_reason IS NULL",
        )
        .bind(team.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(render::TeamContext {
            repositories: rows.into_iter().collect(),
        })
    }

    async fn pending(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        // Applied Applications wait for Argo CD to report them synced and
        // healthy, where an Argo CD is configured for their environment.
        let environments: Vec<&str> = self.argocd.keys().map(String::as_str).collect();
        sqlx::query_as(
            "SELECT team, number FROM provisioning_requests
              WHERE state IN ('requested', 'approved', 'applying')
                 OR (state = 'applied' AND kind = 'argocd-app' AND environment = ANY($1))
              ORDER BY last_sequence",
        )
        .bind(&environments)
        .fetch_all(&self.pool)
        .await
    }

    /// Moves one request on as far as it goes now.
    async fn drive(&self, repo: &Repo, team: &str, number: u64) {
        let Ok(team) = Name::parse(team) else {
            return;
        };
        for _ in 0..8 {
            match self.step(repo, &team, number).await {
                Ok(Step::Moved) => continue,
                Ok(Step::Wait) => return,
                Err(e) => {
                    tracing::warn!(request = %request_id(team.as_str(), number), error = %e, "provisioning step failed; retrying at the next scan");
                    return;
                }
            }
        }
    }

    async fn step(&self, repo: &Repo, team: &Name, number: u64) -> Result<Step, GitError> {
        let tenancy = match self.executor.state::<Tenancy>(team).await {
            Ok(l) => l.state,
            Err(e) => {
                return Err(GitError::Config(format!("cannot load the tenancy: {e}")));
            }
        };
        let Some(r) = tenancy.requests.get(&number) else {
            return Ok(Step::Wait);
        };
        let id = request_id(team.as_str(), number);
        match r.state {
            RequestState::Requested => {
                let base = repo.head().await?;
                self.plan_or_fail(repo, team, &tenancy, number, base).await
            }
            RequestState::Approved => {
                // Keyed by the plan: a request planned again is started again.
                let digest = r.plan.as_ref().map(plan_digest).unwrap_or_default();
                self.record(
                    team,
                    &format!("start:{id}:{digest}"),
                    ProvisioningCommand::StartApply { number },
                )
                .await
            }
            RequestState::Applying => self.apply(repo, team, &tenancy, number).await,
            RequestState::Applied
                if r.spec.kind == paved_domain::provisioning::ResourceKind::ArgoApp =>
            {
                self.verify(team, r).await
            }
            _ => Ok(Step::Wait),
        }
    }

    /// Asks the environment's Argo CD whether the applied Application is
    /// synced and healthy; records that it is verified once it is (a
    /// decommissioned one once it is gone).
    async fn verify(
        &self,
        team: &Name,
        r: &paved_domain::provisioning::Request,
    ) -> Result<Step, GitError> {
        let Some(argocd) = self.argocd.get(r.spec.environment.as_str()) else {
            return Ok(Step::Wait);
        };
        let Some(service) = &r.spec.service else {
            return Ok(Step::Wait);
        };
        let app = format!("{service}-{}", r.spec.environment);
        let done = match argocd.application(&app).await {
            Ok(a) if r.action == Action::Decommission => {
                tracing::debug!(app = %a.metadata.name, "decommissioned Application still in Argo CD");
                false
            }
            Ok(a) => a.status.sync.status == "Synced" && a.status.health.status == "Healthy",
            Err(super::argocd::ArgoError::NotFound(_)) => r.action == Action::Decommission,
            Err(e) => {
                tracing::debug!(app = %app, error = %e, "cannot ask Argo CD yet");
                false
            }
        };
        if !done {
            return Ok(Step::Wait);
        }
        let id = request_id(team.as_str(), r.number);
        self.record(
            team,
            &format!("verified:{id}"),
            ProvisioningCommand::Verify { number: r.number },
        )
        .await
        .map(|_| Step::Wait)
    }

    /// Plans request `number` against `base` and records the plan, or the
    /// failure that there is none.
    async fn plan_or_fail(
        &self,
        repo: &Repo,
        team: &Name,
        tenancy: &Tenancy,
        number: u64,
        base: Option<String>,
    ) -> Result<Step, GitError> {
        let id = request_id(team.as_str(), number);
        match self.plan(repo, team, tenancy, number, base).await? {
            Ok(plan) => {
                let key = format!("plan:{id}:{}", plan_digest(&plan));
                let command = ProvisioningCommand::Plan {
                    number,
                    plan,
                    policy: self.rules.policy.clone(),
                };
                self.record(team, &key, command).await
            }
            Err(reason) => {
                let command = ProvisioningCommand::Fail { number, reason };
                self.record(team, &format!("fail:{id}"), command).await
            }
        }
    }

    /// Renders request `number` against the branch at `base`: the plan,
    /// or why there is none.
    async fn plan(
        &self,
        repo: &Repo,
        team: &Name,
        tenancy: &Tenancy,
        number: u64,
        base: Option<String>,
    ) -> Result<Result<Plan, String>, GitError> {
        let r = &tenancy.requests[&number];
        let dir = match render::resource_dir(team.as_str(), &r.spec) {
            Ok(d) => d,
            Err(e) => return Ok(Err(format!("cannot render: {e}"))),
        };
        let present = repo.files_under(base.as_deref(), &dir).await?;
        let mut files = Vec::new();
        // What the branch holds of each of `files`, in the same order.
        let mut before = Vec::new();
        let mut unchanged = Vec::new();
        let mut drift = Vec::new();
        match r.action {
            Action::Decommission => {
                let paths: Vec<&str> = present.iter().map(String::as_str).collect();
                before = repo.read(base.as_deref(), &paths).await?;
                for path in &present {
                    files.push(PlannedFile {
                        path: path.clone(),
                        content: None,
                    });
                }
                if files.is_empty() {
                    return Ok(Err(format!(
                        "nothing to decommission: {dir} holds no files on the branch"
                    )));
                }
            }
            Action::Create | Action::Change => {
                let mut context = match self.team_context(team).await {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(GitError::Config(format!(
                            "cannot read the team's services: {e}"
                        )));
                    }
                };
                // The request's own service from the log when the catalog's
                // read model has not caught up with it yet (a service
                // registered a moment ago, by a golden path say): a lagging
                // read model must not fail the request for good.
                if let Some(service) = &r.spec.service
                    && !context.repositories.contains_key(service.as_str())
                {
                    match self
                        .executor
                        .state::<Option<paved_domain::catalog::Service>>(service)
                        .await
                    {
                        Ok(l) => {
                            if let Some(s) = l.state.filter(|s| !s.spec.repository_url.is_empty()) {
                                context
                                    .repositories
                                    .insert(service.to_string(), s.spec.repository_url);
                            }
                        }
                        Err(e) => {
                            return Err(GitError::Config(format!(
                                "cannot read service {service} from the log: {e}"
                            )));
                        }
                    }
                }
                let rendered = match render::render(team.as_str(), &r.spec, &self.rules, &context) {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(format!("cannot render: {e}"))),
                };
                if rendered.files.is_empty() {
                    return Ok(Err(
                        "the render is empty: nothing is written or deleted".into()
                    ));
                }
                // What Paved wrote last (the live spec's render): a file
                // that differs from it was edited by someone else.
                let live = tenancy
                    .resources
                    .get(&r.spec.id())
                    .filter(|res| res.commit.is_some())
                    .and_then(|res| {
                        render::render(team.as_str(), &res.spec, &self.rules, &context).ok()
                    });
                let paths: Vec<&str> = rendered.files.iter().map(|(p, _)| p.as_str()).collect();
                let currents = repo.read(base.as_deref(), &paths).await?;
                for ((path, content), current) in rendered.files.iter().zip(currents) {
                    if let (Some(cur), Some(live)) = (&current, &live)
                        && live
                            .files
                            .iter()
                            .find(|(p, _)| p == path)
                            .is_some_and(|(_, c)| c != cur)
                    {
                        drift.push(path.clone());
                    }
                    let file = PlannedFile {
                        path: path.clone(),
                        content: Some(content.clone()),
                    };
                    if current.as_deref() == Some(content.as_str()) {
                        unchanged.push(file);
                    } else {
                        files.push(file);
                        before.push(current);
                    }
                }
                // Files in the resource's directory Paved does not render
                // are someone else's: shown, never deleted.
                for path in &present {
                    if !rendered.files.iter().any(|(p, _)| p == path) {
                        drift.push(path.clone());
                    }
                }
                drift.sort();
            }
        }
        let diff = unified_diff(&files, &before);
        if files.is_empty() && r.action == Action::Create {
            // The branch already holds exactly this: the plan writes it as
            // it is (an empty commit records it).
            files = unchanged;
        }
        Ok(Ok(Plan {
            base: base.unwrap_or_default(),
            files,
            diff,
            drift,
        }))
    }

    async fn apply(
        &self,
        repo: &Repo,
        team: &Name,
        tenancy: &Tenancy,
        number: u64,
    ) -> Result<Step, GitError> {
        let r = &tenancy.requests[&number];
        let id = request_id(team.as_str(), number);
        let Some(plan) = r.plan.clone() else {
            return Ok(Step::Wait);
        };
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        let digest = plan_digest(&plan);
        for attempt in 0..self.timing.push_attempts.max(1) {
            // The scan fetched; after a refused push, fetch what beat us.
            if attempt > 0 {
                repo.fetch().await?;
            }
            let head = repo.head().await?;
            if let Some(sha) = repo
                .find_trailer(&plan.base, head.as_deref(), &id, &digest)
                .await?
            {
                tracing::info!(request = %id, commit = %sha, "found the request's commit on the branch");
                return self
                    .record(
                        team,
                        &format!("applied:{id}:{sha}"),
                        ProvisioningCommand::RecordApplied {
                            number,
                            commit: sha,
                        },
                    )
                    .await;
            }
            let moved = head.as_deref().unwrap_or_default() != plan.base;
            if moved
                && !plan.base.is_empty()
                && let Some(head) = &head
                && repo.touched(&plan.base, head, &paths).await?
            {
                let head = Some(head.clone());
                // Someone changed the plan's files since it was made: plan
                // again against them (and approve again, as the policy says).
                tracing::info!(request = %id, "the branch changed the plan's files; planning again");
                return self.plan_or_fail(repo, team, tenancy, number, head).await;
            }
            let message = format!(
                "paved: {} {} {} of {team}\n\nRequested by {}, approved by {}.\n\n{REQUEST_TRAILER}: {id}\n{PLAN_TRAILER}: {}\n",
                r.action.as_str(),
                r.spec.kind,
                r.spec.id(),
                r.requested_by,
                r.approved_by.as_deref().unwrap_or("the policy"),
                digest,
            );
            let sha = repo.commit(head.as_deref(), &plan.files, &message).await?;
            if repo.push(&sha).await? {
                tracing::info!(request = %id, commit = %sha, "pushed");
                return self
                    .record(
                        team,
                        &format!("applied:{id}:{sha}"),
                        ProvisioningCommand::RecordApplied {
                            number,
                            commit: sha,
                        },
                    )
                    .await;
            }
            tracing::info!(request = %id, "the branch moved on; fetching and trying again");
        }
        Ok(Step::Wait)
    }

    /// Records a step through the write path; a step recorded before (a
    /// restart) or refused (another writer was first) is not an error.
    async fn record(
        &self,
        team: &Name,
        key: &str,
        command: ProvisioningCommand,
    ) -> Result<Step, GitError> {
        let mut meta = CommandMeta::new(format!("gitops:{key}"), self.principal.clone());
        meta.causation_id = key.to_owned();
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..5 {
            match self
                .executor
                .execute::<Tenancy>(team, &command, &meta)
                .await
            {
                Ok(_) => return Ok(Step::Moved),
                Err(ExecuteError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot record the provisioning step yet");
                    tokio::time::sleep(retry.next_delay()).await;
                }
                Err(ExecuteError::RequestIdReused(_)) => return Ok(Step::Moved),
                Err(e) => {
                    tracing::warn!(error = %e, step = key, "provisioning step refused");
                    return Ok(Step::Wait);
                }
            }
        }
        Err(GitError::Config("the log is unavailable".into()))
    }
}

/// The unified diff of a plan: each file against what the branch holds
/// (`before`, in the same order), as `git diff` prints it.
fn unified_diff(files: &[PlannedFile], before: &[Option<String>]) -> String {
    let mut out = String::new();
    for (f, old) in files.iter().zip(before) {
        let new = f.content.as_deref();
        if old.as_deref() == new {
            continue;
        }
        out.push_str(&format!("diff --git a/{0} b/{0}\n", f.path));
        let (from, to) = match (old, new) {
            (None, _) => {
                out.push_str("new file mode 100644\n");
                ("/dev/null".to_owned(), format!("b/{}", f.path))
            }
            (Some(_), None) => {
                out.push_str("deleted file mode 100644\n");
                (format!("a/{}", f.path), "/dev/null".to_owned())
            }
            (Some(_), Some(_)) => (format!("a/{}", f.path), format!("b/{}", f.path)),
        };
        let diff = similar::TextDiff::from_lines(old.as_deref().unwrap_or(""), new.unwrap_or(""));
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_reads_like_git_diff() {
        let files = [
            PlannedFile {
                path: "a.yaml".into(),
                content: Some("x: 1\ny: 2\n".into()),
            },
            PlannedFile {
                path: "b.yaml".into(),
                content: None,
            },
            PlannedFile {
                path: "c.yaml".into(),
                content: Some("same\n".into()),
            },
        ];
        let before = [None, Some("gone\n".into()), Some("same\n".into())];
        let diff = unified_diff(&files, &before);
        assert_eq!(
            diff,
            "diff --git a/a.yaml b/a.yaml\nnew file mode 100644\n--- /dev/null\n+++ b/a.yaml\n@@ -0,0 +1,2 @@\n+x: 1\n+y: 2\ndiff --git a/b.yaml b/b.yaml\ndeleted file mode 100644\n--- a/b.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
        );
    }
}
