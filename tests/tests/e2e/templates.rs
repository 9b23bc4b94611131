//! Golden paths end to end, through the SDK: a shipped template published
//! with its skeleton, run as a task by a member of the team — a new Git
//! repository (a bare repository in a temp dir), a catalog entry, the
//! team's staging namespace and the service's Argo CD Application through
//! the GitOps writer — then a production deployment, and time to first
//! deploy reported. Also: who may do what, bad input, dry runs, a failure
//! retried from its step, crashes of the runner, and template upgrades.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paved::Roles;
use paved_domain::{Name, Principal};
use paved_sdk::{Client, pb};
use tonic::Code;

use crate::helpers::{TestApp, eventually, fixtures, spawn_configured};

const WAIT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs git in `dir`; its stdout (panics on failure).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, as (path relative to `dir`, content).
fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A shipped template as `paved template publish` sends it.
fn publish_request(name: &str) -> pb::PublishTemplateRequest {
    let dir = repo_root().join("templates").join(name);
    pb::PublishTemplateRequest {
        document_yaml: std::fs::read_to_string(dir.join("template.yaml")).unwrap(),
        files: read_tree(&dir.join("skeleton"))
            .into_iter()
            .map(|(path, content)| pb::TemplateFile {
                path: format!("skeleton/{path}"),
                content,
            })
            .collect(),
        ..Default::default()
    }
}

/// A platform: a GitOps remote, repositories under a root of their own,
/// staging provisioned automatically, teams platform, payments and ledger.
struct Platform {
    app: TestApp,
    dir: PathBuf,
    gitops: PathBuf,
    repositories: PathBuf,
}

impl Platform {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A platform with its settings changed by `configure`.
    async fn with(configure: impl FnOnce(&mut paved::Settings)) -> Self {
        let dir =
            std::env::temp_dir().join(format!("paved-golden-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        git(
            &dir,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "gitops.git",
            ],
        );
        let gitops = dir.join("gitops.git");
        let repositories = dir.join("repositories");
        let provisioning = dir.join("provisioning.yaml");
        std::fs::write(
            &provisioning,
            format!(
                "repository:\n  url: {}\n  branch: main\n  workdir: {}\ntiming:\n  scan_ms: 50\npolicy:\n  rules:\n    - {{ environment: staging, approval: automatic }}\n  default: team\n",
                gitops.display(),
                dir.join("gitops-work").display()
            ),
        )
        .unwrap();
        let templates = dir.join("templates.yaml");
        std::fs::write(
            &templates,
            format!(
                "publish:\n  local_root: {}\n  workdir: {}\ntiming:\n  scan_ms: 50\n",
                repositories.display(),
                dir.join("scaffolder-work").display()
            ),
        )
        .unwrap();
        let app = spawn_configured(Roles::ALL, |s| {
            s.provisioning_config = Some(provisioning);
            s.templates_config = Some(templates);
            configure(s);
        })
        .await;
        for team in ["platform", "payments", "ledger"] {
            app.client.create_team(fixtures::team(team)).await.unwrap();
        }
        Self {
            app,
            dir,
            gitops,
            repositories,
        }
    }

    async fn member(&self, name: &str, team: &str) -> Client {
        self.app
            .client_as(Principal::member(name, Name::parse(team).unwrap()))
            .await
    }

    /// The bare repository publish:git made for acme/`repo`.
    fn repository(&self, repo: &str) -> PathBuf {
        self.repositories
            .join("github.com")
            .join("acme")
            .join(format!("{repo}.git"))
    }

    /// The task once `done` says it is where the test wants it.
    async fn task_until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&pb::TemplateTask) -> bool,
    ) -> pb::TemplateTask {
        eventually(WAIT, what, || async {
            let t = self.app.client.at(0).task(id).await.ok()?;
            done(&t).then_some(t)
        })
        .await
    }

    async fn finished(&self, id: &str) -> pb::TemplateTask {
        self.task_until(id, "the task to finish", |t| t.status != "running")
            .await
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn params(name: &str, owner: &str) -> String {
    serde_json::json!({
        "name": name,
        "owner": owner,
        "description": format!("{name}, made from a golden path."),
        "repoUrl": format!("github.com?owner=acme&repo={name}"),
    })
    .to_string()
}

fn create(template: &str, parameters: String) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        template: template.into(),
        parameters_json: parameters,
        ..Default::default()
    }
}

fn fields(e: &paved_sdk::Error) -> Vec<String> {
    e.field_violations().into_iter().map(|(f, _)| f).collect()
}

/// The commits of a bare repository's `branch`, newest first.
fn commits(repo: &Path, branch: &str) -> Vec<String> {
    git(repo, &["log", branch, "--format=%H"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_golden_path_makes_a_repository_a_catalog_entry_a_namespace_and_an_application_then_times_the_first_deploy()
 {
    let p = Platform::new().await;
    let pat = p.member("pat", "platform").await;
    let published = pat
        .publish_template(publish_request("rest-api"))
        .await
        .unwrap();
    assert_eq!(
        (published.name.as_str(), published.version),
        ("rest-api", 1)
    );
    // It is a catalog entity too, as an import would have stored it.
    assert_eq!(published.entity_ref, "template:default/rest-api");
    let entity = p
        .app
        .client
        .catalog()
        .get_entity(pb::GetEntityRequest {
            r#ref: published.entity_ref.clone(),
            min_sequence: published.sequence,
        })
        .await
        .unwrap()
        .into_inner()
        .entity
        .unwrap();
    assert_eq!(entity.kind, "Template");
    let alice = p.member("alice", "payments").await;

    let created = alice
        .create_task(create("rest-api", params("payments-api", "payments")))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert!(
        created.task_id.starts_with("rest-api-"),
        "{}",
        created.task_id
    );
    let task = p.finished(&created.task_id).await;
    assert_eq!(task.status, "completed", "{task:#?}");
    assert_eq!(task.team, "payments");
    assert_eq!(task.service, "payments-api");
    assert_eq!(task.requested_by, "alice");
    let statuses: Vec<(&str, &str)> = task
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("fetch", "done"),
            ("publish", "done"),
            ("namespace", "done"),
            ("register", "done"),
            ("argocd", "done")
        ]
    );
    assert!(task.steps.iter().all(|s| s.attempts == 1));

    // The repository holds the skeleton, in one commit naming the task.
    let repo = p.repository("payments-api");
    let history = commits(&repo, "main");
    assert_eq!(history.len(), 1);
    let message = git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(&format!("Paved-Request: {}/publish", created.task_id)),
        "{message}"
    );
    let listed = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    for file in [
        ".github/workflows/ci.yaml",
        "Dockerfile",
        "catalog-info.yaml",
        "deploy/base/deployment.yaml",
        "mkdocs.yml",
        "src/main.ts",
    ] {
        assert!(listed.lines().any(|l| l == file), "{file} in {listed}");
    }
    let publish = &task.steps[1];
    let out: serde_json::Value = serde_json::from_str(&publish.output_json).unwrap();
    assert_eq!(out["commitHash"], history[0].as_str());
    assert_eq!(out["remoteUrl"], repo.to_str().unwrap());

    // The catalog entry, owned by the team.
    let service = p
        .app
        .client
        .at(task.last_sequence)
        .get_service("payments-api")
        .await
        .unwrap();
    assert_eq!(service.owner, "payments");
    // The namespace and the Application, through the GitOps writer.
    let resources = p
        .app
        .client
        .at(0)
        .provisioned_resources("payments")
        .await
        .unwrap();
    let live: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r.resource.as_str(), r.status.as_str()))
        .collect();
    assert!(live.contains(&("namespace-staging", "live")), "{live:?}");
    assert!(
        live.contains(&("argocd-app-staging-payments-api", "live")),
        "{live:?}"
    );
    let gitops_files = git(&p.gitops, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        gitops_files.contains("argocd/staging/payments/payments-api/application.yaml"),
        "{gitops_files}"
    );
    // The template's output, rendered.
    let output: serde_json::Value = serde_json::from_str(&task.output_json).unwrap();
    assert_eq!(
        output["links"][1]["entityRef"],
        "component:default/payments-api"
    );

    // Not deployed yet: no first deploy.
    let stats = alice.at(0).template_stats("rest-api", "").await.unwrap();
    assert_eq!(stats[0].tasks, 1);
    assert_eq!(stats[0].completed, 1);
    assert_eq!(stats[0].first_deploys, 0);
    assert_eq!(stats[0].time_saved_seconds, 6 * 3600);
    // The first production deployment.
    let created_at = task.created_at.unwrap();
    let finished = chrono::Utc::now();
    let deployed = p
        .app
        .client
        .record_deployment(pb::RecordDeploymentRequest {
            target: Some(pb::DeploymentTarget {
                service: "payments-api".into(),
                environment: "production".into(),
                revision: "abc1234".into(),
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: Some(paved_eventlog::codec::timestamp(finished)),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                finished_at: Some(paved_eventlog::codec::timestamp(finished)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let stats = alice
        .at(deployed.sequence)
        .template_stats("rest-api", "")
        .await
        .unwrap();
    let all = &stats[0];
    assert_eq!((all.team.as_str(), all.first_deploys), ("", 1));
    let started =
        chrono::DateTime::from_timestamp(created_at.seconds, created_at.nanos as u32).unwrap();
    let expected = (finished - started).num_microseconds().unwrap() as f64 / 1e6;
    assert!(
        (all.first_deploy_p50_seconds - expected).abs() < 0.001,
        "{all:?} {expected}"
    );
    assert_eq!(all.first_deploy_p90_seconds, all.first_deploy_p50_seconds);
    assert_eq!(stats[1].team, "payments");
    assert_eq!(stats[1].first_deploys, 1);
    // On /metrics too.
    let metrics = p.app.scrape().await;
    for series in [
        "paved_template_first_deploy_p50_seconds{template=\"rest-api\"}",
        "paved_template_first_deploy_p90_seconds{template=\"rest-api\"}",
        "paved_template_first_deploys{template=\"rest-api\"} 1",
        "paved_template_time_saved_seconds{template=\"rest-api\"} 21600",
        "paved_template_tasks{template=\"rest-api\",status=\"completed\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn who_may_publish_and_run_and_bad_input_is_refused_by_field_with_nothing_appended() {
    let p = Platform::new().await;
    let pat = p.member("pat", "platform").await;
    let alice = p.member("alice", "payments").await;
    let mallory = p.member("mallory", "ledger").await;
    let rita = p.app.client_as(Principal::reader("rita")).await;

    // Publishing: another team's member and a reader may not; nor can a
    // template without its skeleton or with a name Paved cannot run.
    for who in [&alice, &rita] {
        let e = who
            .publish_template(publish_request("worker"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let mut bare = publish_request("worker");
    bare.files.clear();
    let e = pat.publish_template(bare).await.unwrap_err();
    assert_eq!(fields(&e), ["spec.steps[0].input.url"]);
    let mut named = publish_request("worker");
    named.document_yaml = named
        .document_yaml
        .replace("name: worker", "name: Worker_V2");
    let e = pat.publish_template(named).await.unwrap_err();
    assert_eq!(fields(&e), ["metadata.name"]);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut deep = publish_request("worker");
    deep.document_yaml = nested;
    let e = pat.publish_template(deep).await.unwrap_err();
    assert_eq!(fields(&e), ["document_yaml"]);
    pat.publish_template(publish_request("worker"))
        .await
        .unwrap();
    // The same again: nothing.
    let again = pat
        .publish_template(publish_request("worker"))
        .await
        .unwrap();
    assert_eq!((again.version, again.events), (1, 0));

    let before = p.app.last_sequence().await;
    // Running: a reader; a member of another team naming payments as owner.
    let e = rita
        .create_task(create("worker", params("jobs", "payments")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = mallory
        .create_task(create("worker", params("jobs", "payments")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // A member naming another team in `team` while the form says payments.
    let mut other = create("worker", params("jobs", "payments"));
    other.team = "ledger".into();
    let e = mallory.create_task(other).await.unwrap_err();
    assert_eq!(fields(&e), ["parameters.owner"]);
    // The form's rules, each by its field.
    let bad =
        serde_json::json!({"name": "Jobs!", "owner": "payments", "description": "x".repeat(300)});
    let e = alice
        .create_task(create("worker", bad.to_string()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&e),
        [
            "parameters.description",
            "parameters.name",
            "parameters.repoUrl"
        ]
    );
    for (json, field) in [
        ("[1, 2]", "parameters_json"),
        ("{not json", "parameters_json"),
    ] {
        let e = alice
            .create_task(create("worker", json.into()))
            .await
            .unwrap_err();
        assert_eq!(fields(&e), [field], "{json}");
    }
    let huge = serde_json::json!({"name": "x".repeat(70_000)}).to_string();
    let e = alice.create_task(create("worker", huge)).await.unwrap_err();
    assert_eq!(fields(&e), ["parameters_json"]);
    // A template or version that does not exist.
    let e = alice
        .create_task(create("nope", params("jobs", "payments")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut v9 = create("worker", params("jobs", "payments"));
    v9.version = 9;
    assert_eq!(
        alice.create_task(v9).await.unwrap_err().code(),
        Code::NotFound
    );
    // A task that does not exist.
    assert_eq!(
        alice
            .at(0)
            .task("worker-000000000000")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(p.app.last_sequence().await, before, "nothing was appended");

    // A dry run: the files, the steps that would run; nothing appended.
    let mut dry = create("worker", params("jobs", "payments"));
    dry.dry_run = true;
    let rendered = alice.create_task(dry).await.unwrap();
    assert!(rendered.task_id.is_empty());
    assert!(rendered.files.iter().any(|f| f.path == "catalog-info.yaml"
        && f.content.contains("name: jobs")
        && f.content.contains("owner: group:default/payments")));
    let not_run: Vec<&str> = rendered.not_run.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(
        not_run,
        [
            "publish:git",
            "paved:provision",
            "catalog:register",
            "paved:argocd-app"
        ]
    );
    let mut dry = create("worker", params("jobs", "payments"));
    dry.dry_run = true;
    assert_eq!(
        rita.create_task(dry).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        p.app.last_sequence().await,
        before,
        "a dry run appends nothing"
    );

    // The same request id with another body is refused; with the same, answered again.
    let mut first = create("worker", params("jobs", "payments"));
    first.request_id = "create-jobs".into();
    let a = alice.create_task(first.clone()).await.unwrap();
    let b = alice.create_task(first.clone()).await.unwrap();
    assert_eq!(
        (a.task_id.as_str(), a.sequence),
        (b.task_id.as_str(), b.sequence)
    );
    first.parameters_json = params("jobs-two", "payments");
    let e = alice.create_task(first).await.unwrap_err();
    assert_eq!(fields(&e), ["request_id"], "{e:?}");
    // A retry of a task that has not failed, by someone else's team.
    let e = mallory
        .retry_task(pb::RetryTaskRequest {
            id: a.task_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    p.finished(&a.task_id).await;
}

#[tokio::test]
async fn a_failed_step_is_retried_from_where_it_failed_and_finished_steps_do_not_run_again() {
    let p = Platform::new().await;
    let pat = p.member("pat", "platform").await;
    pat.publish_template(publish_request("worker"))
        .await
        .unwrap();
    let alice = p.member("alice", "payments").await;
    // Someone else's repository is where the new one would go.
    let blocker = p.repository("jobs");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    git(
        blocker.parent().unwrap(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "jobs.git",
        ],
    );
    let scratch = p.dir.join("scratch");
    git(
        &p.dir,
        &["clone", "--quiet", blocker.to_str().unwrap(), "scratch"],
    );
    std::fs::write(scratch.join("README.md"), "someone else's\n").unwrap();
    git(&scratch, &["add", "README.md"]);
    git(&scratch, &["commit", "--quiet", "-m", "theirs"]);
    git(&scratch, &["push", "--quiet", "origin", "HEAD:main"]);

    let created = alice
        .create_task(create("worker", params("jobs", "payments")))
        .await
        .unwrap();
    let failed = p.finished(&created.task_id).await;
    assert_eq!(failed.status, "failed");
    let publish = failed.steps.iter().find(|s| s.id == "publish").unwrap();
    assert_eq!(publish.status, "failed");
    assert!(
        publish.reason.contains("is not empty"),
        "{}",
        publish.reason
    );
    assert_eq!(failed.steps[0].status, "done");
    assert!(failed.steps[2..].iter().all(|s| s.status == "pending"));

    // The blocker goes; a member of the team retries; the fetch is not run again.
    std::fs::remove_dir_all(&blocker).unwrap();
    let rita = p.app.client_as(Principal::reader("rita")).await;
    let retry = pb::RetryTaskRequest {
        id: created.task_id.clone(),
        ..Default::default()
    };
    assert_eq!(
        rita.retry_task(retry.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    alice.retry_task(retry.clone()).await.unwrap();
    let done = p
        .task_until(&created.task_id, "the retried task", |t| {
            t.status == "completed"
        })
        .await;
    let attempts: Vec<(&str, u32)> = done
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.attempts))
        .collect();
    assert_eq!(
        attempts,
        [
            ("fetch", 1),
            ("publish", 2),
            ("namespace", 1),
            ("register", 1),
            ("argocd", 1)
        ]
    );
    assert_eq!(commits(&p.repository("jobs"), "main").len(), 1);
    // A completed task is not retried.
    let e = alice.retry_task(retry).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// The events of `task` in the log, by type.
async fn task_events(app: &TestApp, task: &str) -> Vec<String> {
    let mut stream = app
        .client
        .read_events(pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                aggregate_type: "task".into(),
                aggregate_id: task.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut types = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        types.push(r.event_type);
    }
    types
}

#[tokio::test]
async fn a_runner_killed_again_and_again_makes_one_repository_one_entry_one_request_each() {
    let mut p = Platform::new().await;
    let pat = p.member("pat", "platform").await;
    pat.publish_template(publish_request("rust-service"))
        .await
        .unwrap();
    let alice = p.member("alice", "payments").await;
    // The new repository answers pushes slowly: crashes land mid-push.
    let repo = p.repository("ledger-api");
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    git(
        repo.parent().unwrap(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "ledger-api.git",
        ],
    );
    let hook = repo.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\ncat >/dev/null\nsleep 0.3\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let created = alice
        .create_task(create("rust-service", params("ledger-api", "payments")))
        .await
        .unwrap();
    // Crashed (no draining) again and again while the task runs, at
    // different points of its steps. (Each in-process crash leaves the
    // crashed instance's listener connections open until the test ends:
    // a handful, not dozens, or the machine's PostgreSQL runs out.)
    let mut crashes_while_running = 0;
    for round in 0u64..6 {
        let t = p
            .app
            .client
            .at(created.sequence)
            .task(&created.task_id)
            .await
            .unwrap();
        if t.status != "running" {
            break;
        }
        p.app.crash_and_restart().await;
        crashes_while_running += 1;
        tokio::time::sleep(Duration::from_millis(40 * round)).await;
    }
    assert!(crashes_while_running >= 2, "{crashes_while_running}");
    let task = p.finished(&created.task_id).await;
    assert_eq!(task.status, "completed", "{task:#?}");
    assert!(
        task.steps.iter().any(|s| s.attempts == 1),
        "a step started once is recorded once"
    );
    // One commit, one catalog entry, one request per resource.
    assert_eq!(commits(&p.repository("ledger-api"), "main").len(), 1);
    let requests = p
        .app
        .client
        .at(0)
        .provision_requests(pb::ListRequestsRequest {
            team: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .requests;
    let mut resources: Vec<&str> = requests.iter().map(|r| r.resource.as_str()).collect();
    resources.sort();
    assert_eq!(
        resources,
        ["argocd-app-staging-ledger-api", "namespace-staging"]
    );
    let events = task_events(&p.app, &created.task_id).await;
    let finished = events.iter().filter(|e| *e == "TaskStepFinished").count();
    assert_eq!(finished, 5, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "TaskCompleted").count(), 1);
    let services = p
        .app
        .client
        .at(0)
        .list_services(pb::ListServicesRequest {
            owner: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .services;
    assert_eq!(services.len(), 1, "{services:?}");
}

/// `rust-service` version 2: a newer Rust image, a `.dockerignore`, and the
/// README's "Owner" line reworded.
fn rust_service_v2() -> pb::PublishTemplateRequest {
    let mut r = publish_request("rust-service");
    for f in &mut r.files {
        match f.path.as_str() {
            "skeleton/Dockerfile" => {
                f.content = f.content.replace("rust:1.88-slim", "rust:1.91-slim")
            }
            "skeleton/README.md" => {
                f.content = f.content.replace(
                    "- Owner: `${{ values.owner }}`",
                    "- Owned by team `${{ values.owner }}`",
                )
            }
            _ => {}
        }
    }
    r.files.push(pb::TemplateFile {
        path: "skeleton/.dockerignore".into(),
        content: "target/\n".into(),
    });
    r.files.sort_by(|a, b| a.path.cmp(&b.path));
    r
}

/// A developer's clone of a service's repository: edit, commit, push to main.
fn edit_and_push(p: &Platform, repo: &str, edits: &[(&str, &dyn Fn(String) -> String)]) {
    let dir = p.dir.join(format!("dev-{repo}"));
    git(
        &p.dir,
        &[
            "clone",
            "--quiet",
            p.repository(repo).to_str().unwrap(),
            &format!("dev-{repo}"),
        ],
    );
    for (path, edit) in edits {
        let file = dir.join(path);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, edit(text)).unwrap();
        git(&dir, &["add", path]);
    }
    git(&dir, &["commit", "--quiet", "-m", "our own changes"]);
    git(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
}

fn show(repo: &Path, at: &str) -> String {
    git(repo, &["show", at])
}

#[tokio::test]
async fn an_upgrade_merges_the_new_version_into_an_edited_repository_on_a_branch_with_conflicts_marked()
 {
    let p = Platform::new().await;
    let pat = p.member("pat", "platform").await;
    pat.publish_template(publish_request("rust-service"))
        .await
        .unwrap();
    let alice = p.member("alice", "payments").await;
    let mut last = 0;
    for name in ["quiet-api", "noisy-api"] {
        let t = alice
            .create_task(create("rust-service", params(name, "payments")))
            .await
            .unwrap();
        let done = p.finished(&t.task_id).await;
        assert_eq!(done.status, "completed", "{done:#?}");
        last = done.last_sequence;
    }
    // Nothing is outdated at the latest version; an upgrade to it is refused.
    assert!(
        alice
            .at(last)
            .outdated_services("")
            .await
            .unwrap()
            .is_empty()
    );
    let e = alice
        .upgrade_service(pb::UpgradeServiceRequest {
            service: "quiet-api".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["version"], "{e:?}");

    // The teams edit their repositories: quiet-api where the template does
    // not change anything, noisy-api on the very line the template rewords
    // (and, elsewhere in the README, a line of its own).
    edit_and_push(
        &p,
        "quiet-api",
        &[("docs/index.md", &|t| format!("{t}\nOur runbook.\n"))],
    );
    edit_and_push(
        &p,
        "noisy-api",
        &[("README.md", &|t| {
            t.replace(
                "- Owner: `payments`",
                "- Owner: `payments` (on call: #payments-oncall)",
            )
            .replace("cargo run\n", "cargo run --release\n")
        })],
    );
    let quiet_main = commits(&p.repository("quiet-api"), "main")[0].clone();

    let v2 = pat.publish_template(rust_service_v2()).await.unwrap();
    assert_eq!(v2.version, 2);
    let outdated = alice
        .at(v2.sequence)
        .outdated_services("payments")
        .await
        .unwrap();
    let listed: Vec<(&str, u64, u64)> = outdated
        .iter()
        .map(|s| (s.service.as_str(), s.version, s.latest_version))
        .collect();
    assert_eq!(listed, [("noisy-api", 1, 2), ("quiet-api", 1, 2)]);

    // Who may: not another team's member, not a reader; not a service made
    // without a template; not a version that does not exist.
    let mallory = p.member("mallory", "ledger").await;
    let upgrade = |service: &str| pb::UpgradeServiceRequest {
        service: service.into(),
        ..Default::default()
    };
    assert_eq!(
        mallory
            .upgrade_service(upgrade("quiet-api"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let rita = p.app.client_as(Principal::reader("rita")).await;
    assert_eq!(
        rita.upgrade_service(upgrade("quiet-api"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        alice
            .upgrade_service(upgrade("no-such-api"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let mut v9 = upgrade("quiet-api");
    v9.version = 9;
    assert_eq!(
        alice.upgrade_service(v9).await.unwrap_err().code(),
        Code::NotFound
    );

    // No conflicts: the new version's files, the team's edit kept.
    let quiet = alice.upgrade_service(upgrade("quiet-api")).await.unwrap();
    assert_eq!((quiet.from_version, quiet.to_version), (1, 2));
    let done = p.finished(&quiet.task_id).await;
    assert_eq!(done.status, "completed", "{done:#?}");
    assert_eq!(done.kind, "upgrade");
    let out: serde_json::Value = serde_json::from_str(&done.steps[0].output_json).unwrap();
    assert_eq!(out["branch"], "paved/template-rust-service-v2");
    assert_eq!(out["conflicts"], serde_json::json!([]));
    assert_eq!(out["added"], serde_json::json!([".dockerignore"]));
    assert_eq!(
        out["merged"],
        serde_json::json!(["Dockerfile", "README.md"])
    );
    let repo = p.repository("quiet-api");
    let branch = "paved/template-rust-service-v2";
    assert!(show(&repo, &format!("{branch}:Dockerfile")).contains("rust:1.91-slim"));
    assert_eq!(show(&repo, &format!("{branch}:.dockerignore")), "target/\n");
    assert!(show(&repo, &format!("{branch}:README.md")).contains("- Owned by team `payments`"));
    assert!(show(&repo, &format!("{branch}:docs/index.md")).ends_with("Our runbook.\n"));
    assert_eq!(commits(&repo, "main")[0], quiet_main, "main is not touched");
    assert_eq!(
        git(&repo, &["rev-parse", &format!("{branch}^")]).trim(),
        quiet_main,
        "the branch starts at main's head"
    );

    // A conflict: marked in the file, listed in the output and the commit.
    let noisy = alice.upgrade_service(upgrade("noisy-api")).await.unwrap();
    let done = p.finished(&noisy.task_id).await;
    assert_eq!(done.status, "completed", "{done:#?}");
    let out: serde_json::Value = serde_json::from_str(&done.steps[0].output_json).unwrap();
    assert_eq!(out["conflicts"], serde_json::json!(["README.md"]));
    let readme = show(&p.repository("noisy-api"), &format!("{branch}:README.md"));
    assert!(readme.contains("<<<<<<< main\n- Owner: `payments` (on call: #payments-oncall)\n=======\n- Owned by team `payments`\n>>>>>>> template v2\n"), "{readme}");
    // The team's own line elsewhere merged cleanly.
    assert!(readme.contains("cargo run --release\n"), "{readme}");
    let message = git(
        &p.repository("noisy-api"),
        &["log", "-1", "--format=%B", branch],
    );
    assert!(
        message.contains("Conflicts to resolve:\n  README.md"),
        "{message}"
    );

    // Both at version 2 now.
    assert!(
        alice
            .at(done.last_sequence)
            .outdated_services("payments")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn crashes_of_postgres_and_nats_while_tasks_run_lose_nothing_and_do_nothing_twice() {
    use crate::private::{PrivateNats, PrivatePostgres};
    use std::sync::Arc;
    let pg = Arc::new(PrivatePostgres::start());
    let mut nats = PrivateNats::start("");
    let (db, url) = (pg.url("paved"), nats.url());
    let p = Platform::with(|s| {
        s.database_url = db;
        s.nats_url = url;
    })
    .await;
    let pat = p.member("pat", "platform").await;
    pat.publish_template(publish_request("worker"))
        .await
        .unwrap();
    let alice = p.member("alice", "payments").await;
    let names: Vec<String> = (0..4).map(|i| format!("job-{i}")).collect();
    let submitted = tokio::spawn({
        let names = names.clone();
        async move {
            let mut ids = Vec::new();
            for name in names {
                // One request id per task: retried as long as it takes.
                let mut r = create("worker", params(&name, "payments"));
                r.request_id = format!("fault-{name}");
                let id = loop {
                    match alice.create_task(r.clone()).await {
                        Ok(done) => break done.task_id,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            ids
        }
    });
    // PostgreSQL crashes, NATS is killed, PostgreSQL crashes again, while
    // steps are started, carried out and recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.start_again();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    let ids = submitted.await.unwrap();
    assert_eq!(ids.len(), 4);
    for (id, name) in ids.iter().zip(&names) {
        let t = eventually(
            Duration::from_secs(120),
            &format!("{id} finished"),
            || async {
                let t = p.app.client.at(0).task(id).await.ok()?;
                (t.status != "running").then_some(t)
            },
        )
        .await;
        assert_eq!(t.status, "completed", "{t:#?}");
        assert_eq!(
            commits(&p.repository(name), "main").len(),
            1,
            "{name}: one commit"
        );
        let events = task_events(&p.app, id).await;
        let count = |e: &str| events.iter().filter(|x| *x == e).count();
        assert_eq!(count("TaskCreated"), 1, "{events:?}");
        assert_eq!(count("TaskStepFinished"), 5, "{events:?}");
        assert_eq!(count("TaskCompleted"), 1, "{events:?}");
    }
    // One Argo CD application request per service, one namespace for the team.
    let requests = p
        .app
        .client
        .at(0)
        .provision_requests(pb::ListRequestsRequest {
            team: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .requests;
    assert_eq!(requests.len(), 5, "{requests:#?}");
    // The read model equals a fresh replay of the log.
    let (_, checks) = paved_workers::runtime::check(
        &[paved_workers::projections::TemplatesProjection],
        &p.app.pool,
        &p.app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(checks.iter().all(|c| !c.drifted()), "{checks:?}");
}
