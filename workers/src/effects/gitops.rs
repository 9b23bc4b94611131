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
//! the command line); SSH keys through `GIT_SSH_COMMAND`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paved_domain::provisioning::render;
use paved_domain::provisioning::{
    Action, Plan, PlannedFile, ProvisioningCommand, RequestState, Rules, Tenancy, request_id,
};
use paved_domain::{Name, Principal};
use paved_eventlog::retry::Backoff;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;

/// The trailer naming the request a commit applies.
pub const REQUEST_TRAILER: &str = "Paved-Request";
/// The trailer naming the plan (its base and a digest of its files).
pub const PLAN_TRAILER: &str = "Paved-Plan";

/// `PAVED_PROVISIONING_CONFIG`: the repository, and the rules requests are
/// decided and rendered by (see `paved_domain::provisioning::Rules`).
///
/// ```yaml
/// repository:
///   url: https://github.com/acme/gitops.git   # or a local path, or git@host:org/repo.git
///   branch: main
///   token_env: GITOPS_TOKEN                   # HTTPS: or token_file
///   ssh_key_file: /run/secrets/gitops_key     # SSH
///   author_name: Paved
///   author_email: paved@example.com
///   workdir: /var/lib/paved/gitops            # the writer's clone
/// policy: { ... }
/// quotas: { ... }
/// tiers: { ... }
/// sizes: { ... }
/// render: { ... }
/// timing: { scan_ms: 500, push_attempts: 10 }
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    #[serde(default)]
    pub repository: Option<RepositoryConfig>,
    #[serde(default)]
    pub policy: Option<paved_domain::provisioning::Policy>,
    #[serde(default)]
    pub quotas: Option<paved_domain::provisioning::Quotas>,
    #[serde(default)]
    pub tiers: Option<std::collections::BTreeMap<String, paved_domain::provisioning::Tier>>,
    #[serde(default)]
    pub sizes: Option<std::collections::BTreeMap<String, render::DatabaseSize>>,
    #[serde(default)]
    pub render: Option<render::RenderSettings>,
    #[serde(default)]
    pub timing: GitTiming,
}

impl ProvisioningConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rules: what the file says, the defaults for what it leaves out.
    pub fn rules(&self) -> Rules {
        let d = Rules::default();
        Rules {
            policy: self.policy.clone().unwrap_or(d.policy),
            quotas: self.quotas.clone().unwrap_or(d.quotas),
            tiers: self.tiers.clone().unwrap_or(d.tiers),
            sizes: self.sizes.clone().unwrap_or(d.sizes),
            render: self.render.clone().unwrap_or(d.render),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    #[serde(default = "default_author_name")]
    pub author_name: String,
    #[serde(default = "default_author_email")]
    pub author_email: String,
    /// Where the writer keeps its clone (default: under the system's temp dir).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

impl std::fmt::Debug for RepositoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryConfig")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("ssh_key_file", &self.ssh_key_file)
            .finish_non_exhaustive()
    }
}

fn default_branch() -> String {
    "main".into()
}
fn default_author_name() -> String {
    "Paved".into()
}
fn default_author_email() -> String {
    "paved@localhost".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitTiming {
    /// How often open requests are looked for.
    pub scan_ms: u64,
    /// Pushes refused as not fast-forward before the apply waits for the next scan.
    pub push_attempts: u32,
}

impl Default for GitTiming {
    fn default() -> Self {
        Self {
            scan_ms: 500,
            push_attempts: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {args}: {why}")]
    Failed { args: String, why: String },
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// The writer's clone of the repository, driven with the `git` command.
pub struct Repo {
    dir: PathBuf,
    branch: String,
    env: Vec<(String, String)>,
    author: (String, String),
}

impl Repo {
    /// Clones `config.url` into the work dir (or reuses the clone there).
    pub async fn open(config: &RepositoryConfig) -> Result<Self, GitError> {
        let dir = config.workdir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "paved-gitops-{:016x}",
                fxhash(config.url.as_bytes())
            ))
        });
        let mut env = vec![
            // Never wait for a prompt: a missing credential is an error.
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
        ];
        let token = match (&config.token_env, &config.token_file) {
            (Some(var), None) => {
                Some(std::env::var(var).map_err(|_| {
                    GitError::Config(format!("repository: variable {var} is not set"))
                })?)
            }
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        GitError::Config(format!("repository: cannot read {}: {e}", file.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
            _ => {
                return Err(GitError::Config(
                    "repository: give at most one of token_env and token_file".into(),
                ));
            }
        };
        if let Some(token) = token {
            use base64::Engine as _;
            let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            env.extend([
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                ("GIT_CONFIG_KEY_0".to_owned(), "http.extraHeader".to_owned()),
                (
                    "GIT_CONFIG_VALUE_0".to_owned(),
                    format!(
                        "Authorization: Basic {}",
                        encode(&format!("x-access-token:{token}"))
                    ),
                ),
            ]);
        }
        if let Some(key) = &config.ssh_key_file {
            env.push((
                "GIT_SSH_COMMAND".to_owned(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
                    shell_quote(&key.to_string_lossy())
                ),
            ));
        }
        let repo = Self {
            dir,
            branch: config.branch.clone(),
            env,
            author: (config.author_name.clone(), config.author_email.clone()),
        };
        if !repo.dir.join(".git").exists() {
            if let Some(parent) = repo.dir.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let _ = tokio::fs::remove_dir_all(&repo.dir).await;
            let out = Command::new("git")
                .args(["clone", "--quiet", "--no-checkout", &config.url])
                .arg(&repo.dir)
                .envs(repo.env.iter().cloned())
                .output()
                .await?;
            if !out.status.success() {
                return Err(GitError::Failed {
                    args: format!("clone {}", config.url),
                    why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        Ok(repo)
    }

    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .envs(self.env.iter().cloned())
            .env("GIT_AUTHOR_NAME", &self.author.0)
            .env("GIT_AUTHOR_EMAIL", &self.author.1)
            .env("GIT_COMMITTER_NAME", &self.author.0)
            .env("GIT_COMMITTER_EMAIL", &self.author.1)
            .output()
            .await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(GitError::Failed {
                args: args.join(" "),
                why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Fetches the remote's branches.
    pub async fn fetch(&self) -> Result<(), GitError> {
        self.git(&["fetch", "--quiet", "--prune", "origin"]).await?;
        Ok(())
    }

    /// [`Self::fetch`], then [`Self::reset`].
    pub async fn sync(&self) -> Result<Option<String>, GitError> {
        self.fetch().await?;
        self.reset().await
    }

    /// Puts the work tree at the branch's head as last fetched (or pushed),
    /// exactly: no local changes, no untracked files. Returns the head, or
    /// `None` while the branch does not exist yet (an empty repository).
    pub async fn reset(&self) -> Result<Option<String>, GitError> {
        let remote = format!("refs/remotes/origin/{}", self.branch);
        let head = self
            .git(&["rev-parse", "--verify", "--quiet", &remote])
            .await
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        match &head {
            Some(sha) => {
                self.git(&["checkout", "--quiet", "--force", "-B", "paved-work", sha])
                    .await?;
            }
            None => {
                // Nothing on the remote yet: start from an empty tree.
                let _ = self
                    .git(&["checkout", "--quiet", "--force", "--orphan", "paved-work"])
                    .await;
                let _ = self.git(&["rm", "-rf", "--quiet", "--cached", "."]).await;
            }
        }
        self.git(&["clean", "-fdxq"]).await?;
        Ok(head)
    }

    /// The file at `path` on the work tree (the head after [`Self::sync`]).
    async fn read(&self, path: &str) -> Option<String> {
        tokio::fs::read_to_string(self.dir.join(path)).await.ok()
    }

    /// The tracked files under `dir`.
    async fn files_under(&self, dir: &str) -> Result<Vec<String>, GitError> {
        let out = self.git(&["ls-files", "-z", "--", dir]).await?;
        Ok(out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Writes the plan's files into the work tree and stages them.
    async fn write(&self, files: &[PlannedFile]) -> Result<(), GitError> {
        for f in files {
            let path = self.dir.join(&f.path);
            match &f.content {
                Some(content) => {
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    tokio::fs::write(&path, content).await?;
                }
                None => {
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        let mut args = vec!["add", "--all", "--"];
        args.extend(files.iter().map(|f| f.path.as_str()));
        self.git(&args).await?;
        Ok(())
    }

    /// The staged changes as a unified diff.
    async fn staged_diff(&self, paths: &[&str]) -> Result<String, GitError> {
        let mut args = vec!["diff", "--cached", "--no-color", "--no-ext-diff", "--"];
        args.extend(paths);
        self.git(&args).await
    }

    /// The commit on the branch after `base` (all when `base` is empty)
    /// whose `Paved-Request` trailer is exactly `request` and whose
    /// `Paved-Plan` trailer is exactly `plan`. Both: another installation
    /// of Paved writing the same repository numbers its requests the same.
    async fn find_trailer(
        &self,
        base: &str,
        request: &str,
        plan: &str,
    ) -> Result<Option<String>, GitError> {
        let remote = format!("refs/remotes/origin/{}", self.branch);
        if self
            .git(&["rev-parse", "--verify", "--quiet", &remote])
            .await
            .is_err()
        {
            return Ok(None);
        }
        let range = if base.is_empty() {
            remote
        } else {
            format!("{base}..{remote}")
        };
        let format = format!(
            "--format=%H%x00%(trailers:key={REQUEST_TRAILER},valueonly,separator=%x01)%x00%(trailers:key={PLAN_TRAILER},valueonly,separator=%x01)%x02"
        );
        let out = self.git(&["log", &format, &range]).await?;
        let has = |values: &str, wanted: &str| values.split('\u{1}').any(|v| v.trim() == wanted);
        Ok(out.split('\u{2}').find_map(|entry| {
            let mut parts = entry.trim_start_matches('\n').split('\0');
            let sha = parts.next()?;
            let requests = parts.next()?;
            let plans = parts.next()?;
            (has(requests, request) && has(plans, plan)).then(|| sha.trim().to_owned())
        }))
    }

    /// Did the commits from `from` to the branch head change any of `paths`?
    async fn touched(&self, from: &str, paths: &[&str]) -> Result<bool, GitError> {
        let remote = format!("refs/remotes/origin/{}", self.branch);
        let range = format!("{from}..{remote}");
        let mut args = vec!["diff", "--name-only", range.as_str(), "--"];
        args.extend(paths);
        Ok(!self.git(&args).await?.trim().is_empty())
    }

    async fn commit(&self, message: &str) -> Result<String, GitError> {
        self.git(&[
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ])
        .await?;
        Ok(self.git(&["rev-parse", "HEAD"]).await?.trim().to_owned())
    }

    /// Pushes the work branch onto the remote branch; `Ok(false)` when the
    /// remote moved on (not a fast-forward). Never forces.
    async fn push(&self) -> Result<bool, GitError> {
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        match self
            .git(&["push", "--quiet", "--porcelain", "origin", &refspec])
            .await
        {
            Ok(_) => Ok(true),
            Err(GitError::Failed { why, .. })
                if why.contains("non-fast-forward")
                    || why.contains("fetch first")
                    || why.contains("[rejected]")
                    || why.contains("stale info")
                    || why.contains("cannot lock ref") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// A stable 64-bit digest (FNV-1a) for names of work dirs.
fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

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
                let base = repo.reset().await?;
                match self.plan(repo, team, &tenancy, number, base).await? {
                    Ok(plan) => {
                        let command = ProvisioningCommand::Plan {
                            number,
                            plan: plan.clone(),
                            policy: self.rules.policy.clone(),
                        };
                        self.record(team, &format!("plan:{id}:{}", plan_digest(&plan)), command)
                            .await
                    }
                    Err(why) => {
                        self.record(
                            team,
                            &format!("fail:{id}"),
                            ProvisioningCommand::Fail {
                                number,
                                reason: why,
                            },
                        )
                        .await
                    }
                }
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

    /// Renders request `number` against the work tree (at `base`): the plan,
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
        let present = repo.files_under(&dir).await?;
        let mut files = Vec::new();
        let mut unchanged = Vec::new();
        let mut drift = Vec::new();
        match r.action {
            Action::Decommission => {
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
                let context = match self.team_context(team).await {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(GitError::Config(format!(
                            "cannot read the team's services: {e}"
                        )));
                    }
                };
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
                for (path, content) in &rendered.files {
                    let current = repo.read(path).await;
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
        let diff = if files.is_empty() {
            String::new()
        } else {
            repo.write(&files).await?;
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            let diff = repo.staged_diff(&paths).await?;
            repo.reset().await?;
            diff
        };
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
        for attempt in 0..self.timing.push_attempts.max(1) {
            // The scan fetched; after a refused push, fetch what beat us.
            let head = if attempt == 0 {
                repo.reset().await?
            } else {
                repo.sync().await?
            };
            if let Some(sha) = repo
                .find_trailer(&plan.base, &id, &plan_digest(&plan))
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
            if moved && !plan.base.is_empty() && repo.touched(&plan.base, &paths).await? {
                // Someone changed the plan's files since it was made: plan
                // again against them (and approve again, as the policy says).
                tracing::info!(request = %id, "the branch changed the plan's files; planning again");
                return match self.plan(repo, team, tenancy, number, head).await? {
                    Ok(plan) => {
                        let digest = plan_digest(&plan);
                        self.record(
                            team,
                            &format!("plan:{id}:{digest}"),
                            ProvisioningCommand::Plan {
                                number,
                                plan,
                                policy: self.rules.policy.clone(),
                            },
                        )
                        .await
                    }
                    Err(why) => {
                        self.record(
                            team,
                            &format!("fail:{id}"),
                            ProvisioningCommand::Fail {
                                number,
                                reason: why,
                            },
                        )
                        .await
                    }
                };
            }
            repo.write(&plan.files).await?;
            let message = format!(
                "paved: {} {} {} of {team}\n\nRequested by {}, approved by {}.\n\n{REQUEST_TRAILER}: {id}\n{PLAN_TRAILER}: {}\n",
                r.action.as_str(),
                r.spec.kind,
                r.spec.id(),
                r.requested_by,
                r.approved_by.as_deref().unwrap_or("the policy"),
                plan_digest(&plan),
            );
            let sha = repo.commit(&message).await?;
            if repo.push().await? {
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
