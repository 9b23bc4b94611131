//! The actions a template step names. Each is idempotent, keyed by the
//! task and the step: run again after a restart, it finds what it did
//! (the commit by its trailers, the import by its request id, the
//! provisioning request by its request id) instead of doing it twice.

use std::collections::{BTreeMap, BTreeSet};

use paved_domain::provisioning::{
    Action, ProvisioningCommand, RequestState, ResourceKind, ResourceSpec, Tenancy,
};
use paved_domain::templates::{self, UPGRADE_ACTION};
use paved_domain::{Name, Precondition, Principal, Rejection};
use paved_eventlog::{CommandMeta, ExecuteError};
use serde_json::{Value, json};

use super::{Outcome, RegisterError, Run, TaskRunner, Transient};
use crate::effects::gitops::{Repo, plan_digest};
use paved_domain::provisioning::{Plan, PlannedFile};

fn failed(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        log: String::new(),
    }
}

/// A path segment of a repository name: no separators, nothing hidden.
fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The digest of a workspace, as the `Paved-Plan` trailer of its commit.
fn workspace_digest(files: &[(String, String)]) -> String {
    plan_digest(&Plan {
        base: String::new(),
        files: planned(files),
        diff: String::new(),
        drift: Vec::new(),
    })
}

fn planned(files: &[(String, String)]) -> Vec<PlannedFile> {
    files
        .iter()
        .map(|(path, content)| PlannedFile {
            path: path.clone(),
            content: Some(content.clone()),
        })
        .collect()
}

impl TaskRunner {
    pub(super) async fn act(&self, run: &Run<'_>) -> Result<Outcome, Transient> {
        let action = run.task.steps[run.step].def.action.as_str();
        match action {
            "fetch:template" | "fetch:plain" => Ok(self.fetch(run)),
            "publish:git" => self.publish(run).await,
            "catalog:register" => self.register(run).await,
            "paved:provision" => self.provision(run, None).await,
            "paved:argocd-app" => self.provision(run, Some(ResourceKind::ArgoApp)).await,
            "debug:log" => {
                let message = match &run.input["message"] {
                    Value::String(s) => s.clone(),
                    Value::Null => run.input.to_string(),
                    other => other.to_string(),
                };
                Ok(Outcome::Done {
                    output: json!({}),
                    log: message,
                })
            }
            UPGRADE_ACTION => self.upgrade(run).await,
            other => Ok(failed(format!("{other} is not an action Paved runs"))),
        }
    }

    /// `fetch:template` / `fetch:plain`: pure, so only checked and counted
    /// here; later steps render the workspace again from the log.
    fn fetch(&self, run: &Run<'_>) -> Outcome {
        let Some(step) = run.template.steps.iter().find(|s| s.id == run.step_id()) else {
            return failed("the template has no such step");
        };
        match templates::render_fetch(step, &run.version.files, &run.task.context()) {
            Ok(files) => Outcome::Done {
                output: json!({ "files": files.len() }),
                log: files
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
            Err(e) => failed(e.to_string()),
        }
    }

    /// `publish:git`: a new repository holding the workspace, one commit
    /// with `Paved-Request: <task>/<step>` and `Paved-Plan: <digest>`
    /// trailers, pushed to the default branch. A repository that already
    /// holds something else is refused, as Backstage's publishers do.
    async fn publish(&self, run: &Run<'_>) -> Result<Outcome, Transient> {
        let publish = &self.inner.config.publish;
        let repo_url = run.input["repoUrl"].as_str().unwrap_or_default();
        let parsed = templates::parse_repo_url(repo_url);
        let (host, owner, name) = (
            parsed["host"].as_str().unwrap_or_default(),
            parsed["owner"].as_str().unwrap_or_default(),
            parsed["repo"].as_str().unwrap_or_default(),
        );
        if ![host, owner, name].into_iter().all(plain_segment) {
            return Ok(failed(format!(
                "input.repoUrl {repo_url:?} must be host?owner=<owner>&repo=<repo> (plain names)"
            )));
        }
        let branch = run.input["defaultBranch"].as_str().unwrap_or("main");
        if !plain_segment(branch) {
            return Ok(failed(format!(
                "input.defaultBranch {branch:?} is not a branch name"
            )));
        }
        let files = match run.workspace() {
            Ok(f) if f.is_empty() => {
                return Ok(failed("the workspace is empty: no fetch step ran before"));
            }
            Ok(f) => f,
            Err(e) => return Ok(failed(e.to_string())),
        };
        let (remote, local) = publish.remote(host, owner, name);
        if local && !std::path::Path::new(&remote).exists() {
            std::fs::create_dir_all(&remote).map_err(|e| Transient(format!("{remote}: {e}")))?;
            let out = tokio::process::Command::new("git")
                .args(["init", "--quiet", "--bare"])
                .arg(format!("--initial-branch={branch}"))
                .arg(&remote)
                .output()
                .await
                .map_err(|e| Transient(format!("git init: {e}")))?;
            if !out.status.success() {
                return Err(Transient(format!(
                    "git init {remote}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let config = publish.repository(&remote, branch, run.id.as_str());
        let repo = match Repo::open(&config).await {
            Ok(r) => r,
            Err(e) => return Err(e.into()),
        };
        repo.fetch().await?;
        let request = format!("{}/{}", run.id, run.step_id());
        let digest = workspace_digest(&files);
        let contents_url = format!("{}/blob/{branch}", remote.trim_end_matches(".git"));
        let done = |sha: String| Outcome::Done {
            output: json!({
                "remoteUrl": remote,
                "repoContentsUrl": contents_url,
                "commitHash": sha,
            }),
            log: format!("pushed {} files to {remote} ({branch})", files.len()),
        };
        for _ in 0..2 {
            let head = repo.head().await?;
            if let Some(sha) = repo
                .find_trailer("", head.as_deref(), &request, &digest)
                .await?
            {
                cleanup(&config).await;
                return Ok(done(sha));
            }
            if head.is_some() {
                cleanup(&config).await;
                return Ok(failed(format!(
                    "the repository {remote} is not empty: publish:git makes a new repository"
                )));
            }
            let message = format!(
                "{}\n\nMade from template {} version {} by task {}.\n\nPaved-Request: {request}\nPaved-Plan: {digest}\n",
                run.input["gitCommitMessage"]
                    .as_str()
                    .unwrap_or("Initial commit"),
                run.task.template,
                run.task.version,
                run.id,
            );
            let sha = repo.commit(None, &planned(&files), &message).await?;
            if repo.push(&sha).await? {
                cleanup(&config).await;
                return Ok(done(sha));
            }
            // Someone pushed first: fetch and look again.
            repo.fetch().await?;
        }
        Err(Transient(format!("{remote}: the branch keeps moving")))
    }

    /// `catalog:register`: the workspace's `catalog-info.yaml` (what
    /// `publish:git` pushed) through the catalog import, as a member of
    /// the task's team, so the catalog's own rules decide what it may own.
    async fn register(&self, run: &Run<'_>) -> Result<Outcome, Transient> {
        let path = run.input["catalogInfoPath"]
            .as_str()
            .unwrap_or("/catalog-info.yaml")
            .trim_start_matches('/');
        let files = match run.workspace() {
            Ok(f) => f,
            Err(e) => return Ok(failed(e.to_string())),
        };
        let Some((_, yaml)) = files.iter().find(|(p, _)| p == path) else {
            return Ok(failed(format!("the workspace has no {path}")));
        };
        let mut entity = None;
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let Ok(doc) = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc) else {
                return Ok(failed(format!("{path} is not YAML")));
            };
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            if entity.is_none() || kind == "Component" {
                entity = Some(format!("{}:{namespace}/{name}", kind.to_ascii_lowercase()));
            }
        }
        let mut meta = CommandMeta::new(
            run.key("register"),
            Principal::member("worker:templates", run.task.team.clone()),
        );
        meta.causation_id = format!("task:{}", run.id);
        meta.correlation_id = format!("task:{}", run.id);
        match self.inner.registrar.register(&meta, yaml).await {
            Ok(r) => Ok(Outcome::Done {
                output: json!({
                    "entityRef": entity.unwrap_or_default(),
                    "catalogInfoUrl": format!("{}/{path}", run.input["repoContentsUrl"].as_str().unwrap_or_default()),
                }),
                log: format!(
                    "{path}: {} catalog command(s), last at sequence {}",
                    r.commands, r.sequence
                ),
            }),
            Err(RegisterError::Refused(why)) => {
                Ok(failed(format!("the catalog refused {path}: {why}")))
            }
            Err(RegisterError::Unavailable(why)) => Err(Transient(why)),
        }
    }

    /// `paved:provision` (a namespace, a database) and `paved:argocd-app`
    /// (the service's Application): a provisioning request of the task's
    /// team, made once (its request id is the task's and the step's); the
    /// step finishes when it is applied (an application: verified, where
    /// an Argo CD watches the environment), fails when it is rejected or
    /// fails, and waits meanwhile. A resource already live is done.
    async fn provision(
        &self,
        run: &Run<'_>,
        kind: Option<ResourceKind>,
    ) -> Result<Outcome, Transient> {
        let me = &self.inner;
        let input = run.input;
        let team = &run.task.team;
        let text = |k: &str| input[k].as_str().unwrap_or_default().to_owned();
        let kind = match kind.or_else(|| ResourceKind::parse(&text("kind"))) {
            Some(k) => k,
            None => return Ok(failed("input.kind must be namespace, postgres or redis")),
        };
        if !text("team").is_empty() && text("team") != team.as_str() {
            return Ok(failed(format!(
                "input.team is {}, but the task runs for team {team}",
                text("team")
            )));
        }
        let Ok(environment) = Name::parse(&text("environment")) else {
            return Ok(failed("input.environment must be an environment name"));
        };
        let service = match text("service") {
            s if s.is_empty() => None,
            s => match Name::parse(&s) {
                Ok(n) => Some(n),
                Err(_) => return Ok(failed("input.service must be a service name")),
            },
        };
        let size = match text("size") {
            s if s.is_empty() && kind.sized() => "small".to_owned(),
            s => s,
        };
        let command = ProvisioningCommand::Request {
            team: team.clone(),
            spec: ResourceSpec {
                kind,
                environment: environment.clone(),
                service,
                size,
            },
            action: Action::Create,
            rules: Box::new(me.rules.clone()),
        };
        let mut meta = CommandMeta::new(
            run.key("provision"),
            Principal::member("worker:templates", team.clone()),
        );
        meta.causation_id = format!("task:{}", run.id);
        meta.correlation_id = format!("task:{}", run.id);
        let resource = match &command {
            ProvisioningCommand::Request { spec, .. } => spec.id(),
            _ => String::new(),
        };
        let executed = match me.executor.execute::<Tenancy>(team, &command, &meta).await {
            Ok(e) => e,
            Err(ExecuteError::Rejected(Rejection::AlreadyExists(_))) => {
                return Ok(Outcome::Done {
                    output: json!({ "resource": resource, "existing": true }),
                    log: format!("{resource} of team {team} is already live"),
                });
            }
            // Another request for the resource is open: wait for it.
            Err(ExecuteError::Rejected(Rejection::Precondition(
                p @ Precondition::State { .. },
            ))) => {
                return Ok(Outcome::Waiting(p.to_string()));
            }
            Err(ExecuteError::Rejected(r)) => {
                return Ok(failed(format!("the provisioning request was refused: {r}")));
            }
            Err(e @ (ExecuteError::Unavailable(_) | ExecuteError::Conflict { .. })) => {
                return Err(e.into());
            }
            Err(e) => return Ok(failed(e.to_string())),
        };
        let Some(number) = self.request_number(executed.sequence).await? else {
            return Err(Transient(format!(
                "no provisioning request at sequence {}",
                executed.sequence
            )));
        };
        let tenancy = me.executor.state::<Tenancy>(team).await?.state;
        let Some(r) = tenancy.requests.get(&number) else {
            return Err(Transient("the request is not in the tenancy yet".into()));
        };
        let id = paved_domain::provisioning::request_id(team.as_str(), number);
        let verified_here =
            kind == ResourceKind::ArgoApp && me.argocd.contains(environment.as_str());
        let output = || {
            json!({
                "requestId": id,
                "resource": resource,
                "commit": r.commit.clone().unwrap_or_default(),
            })
        };
        Ok(match r.state {
            RequestState::Verified => Outcome::Done {
                output: output(),
                log: format!("{id}: {resource} applied and verified"),
            },
            RequestState::Applied if !verified_here => Outcome::Done {
                output: output(),
                log: format!(
                    "{id}: {resource} applied in commit {}",
                    r.commit.clone().unwrap_or_default()
                ),
            },
            RequestState::Rejected | RequestState::Failed => failed(format!(
                "provisioning request {id} was {}: {}",
                r.state.as_str(),
                r.reason.clone().unwrap_or_default()
            )),
            state => Outcome::Waiting(format!("provisioning request {id} is {}", state.as_str())),
        })
    }

    /// The provisioning request number in the commit at `sequence`.
    async fn request_number(&self, sequence: u64) -> Result<Option<u64>, Transient> {
        let log = self.inner.executor.log();
        let Some(m) = log
            .get(sequence)
            .await
            .map_err(|e| Transient(e.to_string()))?
        else {
            return Ok(None);
        };
        let commit = paved_eventlog::codec::decode_commit(&m.payload)
            .map_err(|e| Transient(format!("commit {sequence} does not decode: {e}")))?;
        Ok(commit.events.iter().find_map(|e| match e {
            paved_domain::Event::Provisioning(e) => Some(e.number()),
            _ => None,
        }))
    }

    /// An upgrade: the old version's render (base), the repository's main
    /// branch (ours) and the new version's render (theirs), merged file by
    /// file as `git merge-file` does, committed on a branch of the
    /// repository (`paved/template-<name>-v<version>`), conflicts marked.
    async fn upgrade(&self, run: &Run<'_>) -> Result<Outcome, Transient> {
        let Some(upgrade) = &run.task.upgrade else {
            return Ok(failed("not an upgrade task"));
        };
        let Some(from) = run.library.version(upgrade.from_version) else {
            return Ok(failed(format!(
                "template {} has no version {}",
                run.task.template, upgrade.from_version
            )));
        };
        let context = json!({ "parameters": run.task.parameters, "steps": {} });
        let render = |v: &paved_domain::templates::library::TemplateVersion| -> Result<Vec<(String, String)>, String> {
            let t = v.template().map_err(|e| e.to_string())?;
            templates::render_workspace(&t.steps, &v.files, &context)
                .map_err(|e| format!("version {}: {e}", v.version))
        };
        let (base, theirs) = match (render(from), render(run.version)) {
            (Ok(b), Ok(t)) => (b, t),
            (Err(e), _) | (_, Err(e)) => return Ok(failed(e)),
        };
        // Where the service's repository is: its create task's publish step.
        let remote: Option<(String, String)> = sqlx::query_as(
            "SELECT s.output->>'remoteUrl', COALESCE(t.parameters->>'defaultBranch', '')
               FROM template_tasks t JOIN template_task_steps s ON s.task = t.id
              WHERE t.service = $1 AND t.kind = 'create' AND s.action = 'publish:git' AND s.status = 'done'
              ORDER BY t.created_at DESC LIMIT 1",
        )
        .bind(upgrade.service.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some((remote, _)) = remote.filter(|(r, _)| !r.is_empty()) else {
            return Ok(failed(format!(
                "no repository of {} is known: it was not published by a template task",
                upgrade.service
            )));
        };
        let branch = format!("paved/template-{}-v{}", run.task.template, run.task.version);
        let publish = &self.inner.config.publish;
        // The default branch is found from the clone (origin/HEAD).
        let config = publish.repository(&remote, "main", run.id.as_str());
        let repo = Repo::open(&config).await?;
        repo.fetch().await?;
        let mut main = "main".to_owned();
        let mut head = repo.head().await?;
        if head.is_none() {
            for candidate in ["master", "trunk"] {
                if let Some(h) = repo.branch_head(candidate).await? {
                    main = candidate.to_owned();
                    head = Some(h);
                    break;
                }
            }
        }
        let Some(head) = head else {
            cleanup(&config).await;
            return Ok(failed(format!("{remote} has no main branch")));
        };
        let request = format!("{}/{}", run.id, run.step_id());
        // Found again after a restart: the same merge was pushed.
        if let Some(at) = repo.branch_head(&branch).await?
            && let Some(sha) = repo.find_trailer(&head, Some(&at), &request, &head).await?
        {
            cleanup(&config).await;
            return Ok(Outcome::Done {
                output: json!({ "branch": branch, "commitHash": sha, "remoteUrl": remote }),
                log: format!("the upgrade is on {branch}"),
            });
        }
        let base: BTreeMap<String, String> = base.into_iter().collect();
        let theirs: BTreeMap<String, String> = theirs.into_iter().collect();
        let paths: BTreeSet<&String> = base.keys().chain(theirs.keys()).collect();
        let path_list: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
        let ours_list = repo.read(Some(&head), &path_list).await?;
        let ours: BTreeMap<&str, Option<String>> =
            path_list.iter().copied().zip(ours_list).collect();
        let mut files = Vec::new();
        let (mut merged, mut conflicts, mut added, mut deleted, mut kept) =
            (vec![], vec![], vec![], vec![], vec![]);
        for path in paths {
            let b = base.get(path);
            let t = theirs.get(path);
            let o = ours.get(path.as_str()).cloned().flatten();
            if b == t || o.as_ref() == t {
                continue; // the template did not change it, or the repository already has it
            }
            match (b, t, &o) {
                // The template deleted it.
                (Some(b), None, Some(o)) if o == b => {
                    deleted.push(path.clone());
                    files.push(PlannedFile {
                        path: path.clone(),
                        content: None,
                    });
                }
                (Some(_), None, Some(_)) => kept.push(path.clone()),
                (_, None, _) => {}
                // The repository still holds the old version's file: take the new.
                (_, Some(t), Some(o)) if Some(o) == b => {
                    merged.push(path.clone());
                    files.push(PlannedFile {
                        path: path.clone(),
                        content: Some(t.clone()),
                    });
                }
                (_, Some(t), None) => {
                    added.push(path.clone());
                    files.push(PlannedFile {
                        path: path.clone(),
                        content: Some(t.clone()),
                    });
                }
                (b, Some(t), Some(o)) => {
                    let (old, new) = (
                        format!("template v{}", upgrade.from_version),
                        format!("template v{}", run.task.version),
                    );
                    let (text, conflict) = repo
                        .merge_file(
                            o,
                            b.map(String::as_str).unwrap_or(""),
                            t,
                            [main.as_str(), &old, &new],
                        )
                        .await?;
                    if conflict {
                        conflicts.push(path.clone());
                    } else {
                        merged.push(path.clone());
                    }
                    files.push(PlannedFile {
                        path: path.clone(),
                        content: Some(text),
                    });
                }
            }
        }
        let summary = json!({
            "branch": branch,
            "remoteUrl": remote,
            "base": main,
            "merged": merged,
            "added": added,
            "deleted": deleted,
            "conflicts": conflicts,
            "keptModified": kept,
        });
        let mut log = format!(
            "template {} v{} -> v{} on {branch} (from {main}): {} merged, {} added, {} deleted, {} conflicts",
            run.task.template,
            upgrade.from_version,
            run.task.version,
            merged.len(),
            added.len(),
            deleted.len(),
            conflicts.len()
        );
        for c in &conflicts {
            log.push_str(&format!("\nconflict: {c}"));
        }
        for k in &kept {
            log.push_str(&format!(
                "\nkept (changed here, deleted by the template): {k}"
            ));
        }
        let message = format!(
            "Upgrade to template {} version {}\n\nMerged by Paved from version {} (task {}).{}\n\nPaved-Request: {request}\nPaved-Plan: {head}\n",
            run.task.template,
            run.task.version,
            upgrade.from_version,
            run.id,
            if conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    "\n\nConflicts to resolve:\n{}",
                    conflicts
                        .iter()
                        .map(|c| format!("  {c}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            },
        );
        let sha = repo.commit(Some(&head), &files, &message).await?;
        if !repo.push_branch(&sha, &branch).await? {
            cleanup(&config).await;
            return Ok(failed(format!(
                "the branch {branch} exists in {remote} with other commits"
            )));
        }
        cleanup(&config).await;
        let mut output = summary;
        output["commitHash"] = json!(sha);
        Ok(Outcome::Done { output, log })
    }
}

/// Removes a finished step's clone.
async fn cleanup(config: &crate::effects::gitops::RepositoryConfig) {
    if let Some(dir) = &config.workdir
        && let Err(e) = tokio::fs::remove_dir_all(dir).await
    {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot remove the clone");
    }
}
