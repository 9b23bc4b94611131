//! Provisioning end to end, through the SDK: request → plan → approve →
//! commit in a real Git remote (a bare repository in a temp dir, pushed to
//! by the GitOps writer over the `git` command), with the policy, quotas,
//! drift, a remote that moved on, a crash between the push and the outcome,
//! and a decommission.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paved::Roles;
use paved_domain::provisioning::{ProvisioningCommand, Tenancy};
use paved_domain::{AggregateKind, Name, Principal};
use paved_eventlog::{CommandMeta, Executor};
use paved_sdk::pb;
use tonic::Code;

use crate::helpers::{TestApp, eventually, fixtures, spawn_configured};

const WAIT: Duration = Duration::from_secs(30);

/// Runs git in `dir`; panics with its stderr on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Someone Else")
        .env("GIT_AUTHOR_EMAIL", "else@example.com")
        .env("GIT_COMMITTER_NAME", "Someone Else")
        .env("GIT_COMMITTER_EMAIL", "else@example.com")
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

/// A bare "remote" with one commit on main, and a clone of it for the test
/// to play someone else.
struct Remote {
    dir: PathBuf,
    bare: PathBuf,
    other: PathBuf,
}

impl Remote {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("paved-gitops-{}", uuid::Uuid::new_v4().simple()));
        let bare = dir.join("remote.git");
        let other = dir.join("someone-else");
        std::fs::create_dir_all(&dir).unwrap();
        git(
            &dir,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "remote.git",
            ],
        );
        git(
            &dir,
            &["clone", "--quiet", bare.to_str().unwrap(), "someone-else"],
        );
        std::fs::write(other.join("README.md"), "# GitOps\n").unwrap();
        git(&other, &["checkout", "--quiet", "-b", "main"]);
        git(&other, &["add", "README.md"]);
        git(&other, &["commit", "--quiet", "-m", "start"]);
        git(&other, &["push", "--quiet", "origin", "main"]);
        Self { dir, bare, other }
    }

    /// A file on the remote's main, if there.
    fn file(&self, path: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.bare)
            .args(["show", &format!("main:{path}")])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The commits on main whose `Paved-Request` trailer is `id`.
    fn commits_for(&self, id: &str) -> Vec<String> {
        let out = git(
            &self.bare,
            &[
                "log",
                "main",
                "--format=%H %(trailers:key=Paved-Request,valueonly,separator=%x2C)",
            ],
        );
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, v)| v.split(',').any(|v| v.trim() == id))
            .map(|(sha, _)| sha.to_owned())
            .collect()
    }

    fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"]).trim().to_owned()
    }

    /// Someone else commits `files` to main (and pushes).
    fn push(&self, message: &str, files: &[(&str, Option<&str>)]) {
        git(
            &self.other,
            &["pull", "--quiet", "--ff-only", "origin", "main"],
        );
        for (path, content) in files {
            let p = self.other.join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
            git(&self.other, &["add", "--all", "--", path]);
        }
        git(
            &self.other,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(&self.other, &["push", "--quiet", "origin", "main"]);
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Paved with the writer on `remote`, `policy` (YAML) and `quotas`.
async fn setup(remote: &Remote, policy: &str, extra: &str) -> TestApp {
    setup_with(remote, policy, extra, |_| {}).await
}

/// [`setup`] with more settings changed by `configure`.
async fn setup_with(
    remote: &Remote,
    policy: &str,
    extra: &str,
    configure: impl FnOnce(&mut paved::Settings),
) -> TestApp {
    let config = format!(
        "repository:\n  url: {}\n  branch: main\n  workdir: {}\n  author_name: Paved Test\n  author_email: paved@test\ntiming:\n  scan_ms: 50\n{policy}{extra}",
        remote.bare.display(),
        remote
            .dir
            .join(format!("work-{}", uuid::Uuid::new_v4().simple()))
            .display(),
    );
    let path = remote.dir.join(format!(
        "provisioning-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, config).unwrap();
    let app = spawn_configured(Roles::ALL, |s| {
        s.provisioning_config = Some(path);
        configure(s);
    })
    .await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    app.client
        .create_team(fixtures::team("search"))
        .await
        .unwrap();
    for service in ["payments-api", "ledger"] {
        app.client
            .register_service(fixtures::service(service, "payments"))
            .await
            .unwrap();
    }
    app
}

/// A client for member `name` of `team`.
async fn member(app: &TestApp, name: &str, team: &str) -> paved_sdk::Client {
    app.client_as(Principal::member(name, Name::parse(team).unwrap()))
        .await
}

const TEAM_POLICY: &str = "policy:\n  rules:\n    - { environment: production, approval: admin }\n  default: team\n  max_deletions_without_admin: 5\n";

fn namespace(env: &str) -> pb::RequestResourceRequest {
    pb::RequestResourceRequest {
        team: "payments".into(),
        kind: "namespace".into(),
        environment: env.into(),
        size: "small".into(),
        ..Default::default()
    }
}

fn decide(id: &str, reason: &str) -> pb::ApproveRequestRequest {
    pb::ApproveRequestRequest {
        id: id.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

/// Waits until request `id` is in `state`.
async fn reaches(app: &TestApp, id: &str, state: &str) -> pb::ProvisionRequest {
    eventually(WAIT, &format!("{id} {state}"), || async {
        let r = app.client.at(0).provision_request(id).await.ok()?;
        assert!(
            r.state != "failed" || state == "failed",
            "{id} failed: {}",
            r.reason
        );
        (r.state == state).then_some(r)
    })
    .await
}

/// The event types of `team`'s tenancy, in order.
async fn tenancy_events(app: &TestApp, team: &str) -> Vec<&'static str> {
    let subject = app
        .log
        .subject(AggregateKind::Tenancy, &Name::parse(team).unwrap());
    app.log
        .read_subject(&subject, 1, u64::MAX)
        .await
        .unwrap()
        .iter()
        .flat_map(|m| {
            paved_eventlog::codec::decode_commit(&m.payload)
                .unwrap()
                .events
        })
        .map(|e| e.type_name())
        .collect()
}

#[tokio::test]
async fn a_namespace_is_planned_approved_by_someone_else_and_committed_once() {
    let remote = Remote::new();
    let app = setup(&remote, TEAM_POLICY, "").await;
    let alice = member(&app, "alice", "payments").await;
    let bob = member(&app, "bob", "payments").await;
    let carol = member(&app, "carol", "search").await;

    // Another team's member may not ask for payments' namespace.
    let e = carol
        .request_resource(namespace("staging"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let done = alice.request_resource(namespace("staging")).await.unwrap();
    assert_eq!(done.id, "payments/1");
    let planned = reaches(&app, &done.id, "planned").await;
    assert_eq!(planned.approver, "team");
    assert_eq!(planned.plan_base, remote.head());
    assert_eq!(planned.files.len(), 10, "{:?}", planned.files);
    assert!(planned.files.iter().all(|f| !f.deleted));
    assert!(
        planned
            .diff
            .contains("+++ b/namespaces/payments-staging/namespace.yaml")
            && planned.diff.contains("+kind: Namespace"),
        "{}",
        planned.diff
    );
    // Nothing is in the repository before the approval; /metrics shows
    // the request waiting for it.
    assert_eq!(
        remote.file("namespaces/payments-staging/namespace.yaml"),
        None
    );
    let metrics = app.scrape().await;
    assert!(
        metrics.contains("paved_provisioning_requests_open{status=\"planned\"} 1"),
        "{metrics}"
    );

    // The requester may not approve; another team's member neither.
    let e = alice
        .approve_request(decide(&done.id, "mine"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = carol
        .approve_request(decide(&done.id, "theirs"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Nor a request that does not exist, nor a malformed id.
    let e = bob
        .approve_request(decide("payments/99", "no"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = bob
        .approve_request(decide("payments", "no"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "id");

    bob.approve_request(decide(&done.id, "as agreed"))
        .await
        .unwrap();
    let applied = reaches(&app, &done.id, "applied").await;
    assert_eq!(applied.approved_by, "bob");
    assert_eq!(
        remote.commits_for(&done.id),
        std::slice::from_ref(&applied.commit)
    );
    assert_eq!(remote.head(), applied.commit);
    let ns = remote
        .file("namespaces/payments-staging/namespace.yaml")
        .unwrap();
    assert!(ns.contains("name: payments-staging"), "{ns}");
    let message = git(
        &remote.bare,
        &["log", "-1", "--format=%an <%ae>%n%B", "main"],
    );
    assert!(message.starts_with("Paved Test <paved@test>"), "{message}");
    assert!(message.contains("Paved-Plan: "), "{message}");

    let resources = app
        .client
        .at(0)
        .provisioned_resources("payments")
        .await
        .unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].status, "live");
    assert_eq!(resources[0].commit, applied.commit);
    assert_eq!(
        tenancy_events(&app, "payments").await,
        [
            "ProvisionRequested",
            "ProvisionPlanned",
            "ProvisionApproved",
            "ProvisionApplyStarted",
            "ProvisionApplied"
        ]
    );

    // A second request for the same namespace is refused while it is live.
    let e = alice
        .request_resource(namespace("staging"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn production_needs_an_admin_and_big_deletions_need_one_whatever_the_rules_say() {
    let remote = Remote::new();
    let policy = "policy:\n  rules:\n    - { environment: production, approval: admin }\n    - { environment: staging, approval: automatic }\n  default: team\n  max_deletions_without_admin: 5\n";
    let app = setup(&remote, policy, "").await;
    let alice = member(&app, "alice", "payments").await;
    let bob = member(&app, "bob", "payments").await;

    // Staging is automatic: planned, approved and applied without anyone.
    let staging = alice.request_resource(namespace("staging")).await.unwrap();
    let applied = reaches(&app, &staging.id, "applied").await;
    assert_eq!(applied.approved_by, "worker:gitops");

    // Production needs an admin: a member is refused, the admin approves.
    let prod = alice
        .request_resource(namespace("production"))
        .await
        .unwrap();
    let planned = reaches(&app, &prod.id, "planned").await;
    assert_eq!(planned.approver, "admin");
    let e = bob
        .approve_request(decide(&prod.id, "ok"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.client
        .approve_request(decide(&prod.id, "production is ready"))
        .await
        .unwrap();
    reaches(&app, &prod.id, "applied").await;

    // A database of a service: planned against the namespace, with its secret there.
    let pg = alice
        .request_resource(pb::RequestResourceRequest {
            kind: "postgres".into(),
            environment: "staging".into(),
            service: "payments-api".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        pg.id, "payments/3",
        "the team came from the service's owner"
    );
    reaches(&app, &pg.id, "applied").await;
    let tf = remote
        .file("terraform/staging/payments/postgres-payments-api/main.tf.json")
        .unwrap();
    let tf: serde_json::Value = serde_json::from_str(&tf).unwrap();
    assert_eq!(
        tf["resource"]["kubernetes_secret_v1"]["connection"]["metadata"]["namespace"],
        "payments-staging"
    );

    // Decommissioning staging deletes its 10 files: more than 5, so an admin
    // must approve, although staging is automatic.
    let gone = alice
        .request_resource(pb::RequestResourceRequest {
            action: "decommission".into(),
            ..namespace("staging")
        })
        .await
        .unwrap();
    let planned = reaches(&app, &gone.id, "planned").await;
    assert_eq!(planned.approver, "admin");
    assert_eq!(planned.files.len(), 10);
    assert!(planned.files.iter().all(|f| f.deleted));
    assert!(
        planned.diff.contains("-kind: Namespace"),
        "{}",
        planned.diff
    );
    assert!(
        remote
            .file("namespaces/payments-staging/namespace.yaml")
            .is_some()
    );
    app.client
        .approve_request(decide(&gone.id, "staging is retired"))
        .await
        .unwrap();
    reaches(&app, &gone.id, "applied").await;
    assert_eq!(
        remote.file("namespaces/payments-staging/namespace.yaml"),
        None
    );
    // What else is there stays.
    assert!(
        remote
            .file("namespaces/payments-production/namespace.yaml")
            .is_some()
    );
    assert!(remote.file("README.md").is_some());
    let resources = app
        .client
        .at(0)
        .provisioned_resources("payments")
        .await
        .unwrap();
    let status = |id: &str| {
        resources
            .iter()
            .find(|r| r.resource == id)
            .map(|r| r.status.clone())
    };
    assert_eq!(
        status("namespace-staging").as_deref(),
        Some("decommissioned")
    );
    assert_eq!(status("namespace-production").as_deref(), Some("live"));
}

#[tokio::test]
async fn two_requests_at_the_quota_one_passes_and_bad_input_is_refused_by_field() {
    let remote = Remote::new();
    let quotas =
        "quotas:\n  databases_per_environment: 1\n  cpu_millis: 100000\n  memory_mib: 100000\n";
    let policy = "policy:\n  default: automatic\n";
    let app = setup(&remote, policy, quotas).await;
    let ns = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    reaches(&app, &ns.id, "applied").await;
    let db = |service: &str| pb::RequestResourceRequest {
        kind: "redis".into(),
        environment: "staging".into(),
        service: service.into(),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        app.client.request_resource(db("payments-api")),
        app.client.request_resource(db("ledger"))
    );
    let (ok, refused): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "exactly one passes the limit");
    let e = refused.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Bad input: every problem by field, nothing appended.
    let e = app
        .client
        .request_resource(pb::RequestResourceRequest {
            team: "payments".into(),
            kind: "mainframe".into(),
            environment: "Not A Name".into(),
            size: "x".repeat(100),
            action: "explode".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    for f in ["kind", "action", "environment", "size"] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    let e = app
        .client
        .request_resource(pb::RequestResourceRequest {
            size: "gigantic".into(),
            ..namespace("production")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "size");
    // A service that is not in the catalog.
    let e = app.client.request_resource(db("ghost")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // The same request id with another body is refused.
    let mut first = namespace("production");
    first.request_id = "same-id".into();
    app.client.request_resource(first.clone()).await.unwrap();
    let again = app.client.request_resource(first.clone()).await.unwrap();
    assert_eq!(again.id, "payments/3", "a retry answers the first request");
    let other = pb::RequestResourceRequest {
        size: "medium".into(),
        ..first
    };
    let e = app.client.request_resource(other).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(e.field_violations()[0].0, "request_id");
    // Requested: the namespace, one database, production (once).
    let requested = tenancy_events(&app, "payments")
        .await
        .into_iter()
        .filter(|t| *t == "ProvisionRequested")
        .count();
    assert_eq!(requested, 3);
}

#[tokio::test]
async fn a_remote_that_moved_on_is_built_upon_and_one_that_touched_the_plan_is_planned_again() {
    let remote = Remote::new();
    let app = setup(&remote, TEAM_POLICY, "").await;
    let bob = member(&app, "bob", "payments").await;
    let r = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    let planned = reaches(&app, &r.id, "planned").await;

    // Someone else pushes elsewhere in the repository: the plan still holds.
    remote.push("docs", &[("docs/readme.md", Some("hello\n"))]);
    let moved = remote.head();
    bob.approve_request(decide(&r.id, "ok")).await.unwrap();
    let applied = reaches(&app, &r.id, "applied").await;
    let parent = git(
        &remote.bare,
        &["rev-parse", &format!("{}^", applied.commit)],
    );
    assert_eq!(parent.trim(), moved, "built on the new head, never forced");
    assert!(remote.file("docs/readme.md").is_some());
    assert_ne!(planned.plan_base, moved);

    // A change whose files someone else then edits is planned again.
    let change = app
        .client
        .request_resource(pb::RequestResourceRequest {
            action: "change".into(),
            size: "medium".into(),
            ..namespace("staging")
        })
        .await
        .unwrap();
    let first = reaches(&app, &change.id, "planned").await;
    assert!(
        first.diff.contains("+    requests.cpu: 8000m"),
        "{}",
        first.diff
    );
    // Someone edits a managed file by hand: drift, shown in the next plan.
    remote.push(
        "hand edit",
        &[(
            "namespaces/payments-staging/limitrange.yaml",
            Some("edited: by hand\n"),
        )],
    );
    bob.approve_request(decide(&change.id, "ok")).await.unwrap();
    let again = eventually(WAIT, "planned again", || async {
        let r = app.client.at(0).provision_request(&change.id).await.ok()?;
        (r.state == "planned" && r.plan_base != first.plan_base).then_some(r)
    })
    .await;
    assert_eq!(again.plan_base, remote.head());
    assert_eq!(again.drift, ["namespaces/payments-staging/limitrange.yaml"]);
    assert!(again.diff.contains("-edited: by hand"), "{}", again.diff);
    bob.approve_request(decide(&change.id, "put it back"))
        .await
        .unwrap();
    let applied = reaches(&app, &change.id, "applied").await;
    assert_eq!(remote.commits_for(&change.id), [applied.commit]);
    let limits = remote
        .file("namespaces/payments-staging/limitrange.yaml")
        .unwrap();
    assert!(limits.contains("kind: LimitRange"), "{limits}");
}

#[tokio::test]
async fn a_crash_between_the_push_and_the_outcome_makes_one_commit_and_one_outcome() {
    let remote = Remote::new();
    let mut app = setup(&remote, TEAM_POLICY, "").await;
    let r = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    let planned = reaches(&app, &r.id, "planned").await;
    app.stop().await.unwrap();

    // While the writer is down: approved and started (as the writer would),
    // and the commit pushed with its trailer — the writer "crashed" before
    // recording the outcome.
    let executor = Executor::new(app.log.clone(), 16);
    let team = Name::parse("payments").unwrap();
    for (key, who, command) in [
        (
            "approve",
            Principal::member("bob", team.clone()),
            ProvisioningCommand::Approve {
                number: 1,
                reason: "ok".into(),
            },
        ),
        (
            "start",
            Principal::admin("worker:gitops"),
            ProvisioningCommand::StartApply { number: 1 },
        ),
    ] {
        executor
            .execute::<Tenancy>(&team, &command, &CommandMeta::new(key, who))
            .await
            .unwrap();
    }
    let namespace_yaml = paved_domain::provisioning::render::render(
        "payments",
        &paved_domain::provisioning::ResourceSpec {
            kind: paved_domain::provisioning::ResourceKind::Namespace,
            environment: Name::parse("staging").unwrap(),
            service: None,
            size: "small".into(),
        },
        &Default::default(),
        &paved_domain::provisioning::render::TeamContext::default(),
    )
    .unwrap();
    let files: Vec<(&str, Option<&str>)> = namespace_yaml
        .files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    // The plan the writer made, as the writer's own commit names it.
    let tenancy = executor.state::<Tenancy>(&team).await.unwrap().state;
    let digest =
        paved_workers::effects::gitops::plan_digest(tenancy.requests[&1].plan.as_ref().unwrap());
    remote.push(
        &format!(
            "paved: create namespace\n\nPaved-Request: {}\nPaved-Plan: {digest}",
            r.id
        ),
        &files,
    );
    let pushed = remote.head();
    assert_ne!(pushed, planned.plan_base);

    // Restarted (three times over): the writer finds its commit and records it.
    for _ in 0..3 {
        app.crash_and_restart().await;
        let applied = reaches(&app, &r.id, "applied").await;
        assert_eq!(applied.commit, pushed);
    }
    assert_eq!(remote.commits_for(&r.id), std::slice::from_ref(&pushed));
    assert_eq!(remote.head(), pushed, "no second commit");
    let outcomes = tenancy_events(&app, "payments")
        .await
        .into_iter()
        .filter(|t| *t == "ProvisionApplied")
        .count();
    assert_eq!(outcomes, 1);
    // A request that crashed before its push is pushed once on restart.
    let alice = member(&app, "alice", "payments").await;
    let second = alice
        .request_resource(namespace("production"))
        .await
        .unwrap();
    reaches(&app, &second.id, "planned").await;
    app.client
        .approve_request(decide(&second.id, "ok"))
        .await
        .unwrap();
    let applied = reaches(&app, &second.id, "applied").await;
    app.crash_and_restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(remote.commits_for(&second.id), [applied.commit]);
}

#[tokio::test]
async fn a_decommission_with_nothing_to_delete_fails_and_deletes_nothing() {
    let remote = Remote::new();
    let app = setup(&remote, "policy:\n  default: automatic\n", "").await;
    let r = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    reaches(&app, &r.id, "applied").await;
    // Someone else removes the files by hand.
    git(
        &remote.other,
        &["pull", "--quiet", "--ff-only", "origin", "main"],
    );
    let files: Vec<String> = git(&remote.other, &["ls-files", "namespaces/payments-staging"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(files.len(), 10);
    let deletions: Vec<(&str, Option<&str>)> = files.iter().map(|p| (p.as_str(), None)).collect();
    remote.push("removed by hand", &deletions);
    let head = remote.head();
    let gone = app
        .client
        .request_resource(pb::RequestResourceRequest {
            action: "decommission".into(),
            ..namespace("staging")
        })
        .await
        .unwrap();
    let failed = reaches(&app, &gone.id, "failed").await;
    assert!(
        failed.reason.contains("nothing to decommission"),
        "{}",
        failed.reason
    );
    assert_eq!(remote.head(), head, "nothing was committed");
}

#[tokio::test]
async fn a_provisioned_database_is_a_catalog_resource_and_retiring_its_service_proposes_its_decommission()
 {
    let remote = Remote::new();
    let app = setup(&remote, TEAM_POLICY, "").await;
    let bob = member(&app, "bob", "payments").await;
    let ns = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    reaches(&app, &ns.id, "planned").await;
    bob.approve_request(decide(&ns.id, "ok")).await.unwrap();
    reaches(&app, &ns.id, "applied").await;
    let pg = app
        .client
        .request_resource(pb::RequestResourceRequest {
            kind: "postgres".into(),
            environment: "staging".into(),
            service: "payments-api".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    reaches(&app, &pg.id, "planned").await;
    bob.approve_request(decide(&pg.id, "ok")).await.unwrap();
    let applied = reaches(&app, &pg.id, "applied").await;

    // In the catalog: a Resource owned by the team, a dependency of the service.
    let entity = eventually(WAIT, "the resource entity", || async {
        app.client
            .at(0)
            .get_entity("resource:default/payments-postgres-staging-payments-api")
            .await
            .ok()
    })
    .await;
    let doc: serde_json::Value = serde_json::from_str(&entity.document_json).unwrap();
    assert_eq!(doc["spec"]["type"], "postgres-database");
    assert_eq!(doc["spec"]["owner"], "group:default/payments");
    assert_eq!(
        doc["spec"]["dependencyOf"][0],
        "component:default/payments-api"
    );
    assert_eq!(
        doc["metadata"]["annotations"]["paved.dev/commit"],
        applied.commit
    );
    assert_eq!(
        doc["metadata"]["annotations"]["paved.dev/provisioning-request"],
        pg.id
    );
    assert!(
        app.client
            .at(0)
            .get_entity("resource:default/payments-namespace-staging")
            .await
            .is_ok()
    );

    // Retiring the service proposes the decommission of its database.
    app.client
        .retire_service(pb::RetireServiceRequest {
            name: "payments-api".into(),
            reason: "replaced by ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let proposed = eventually(WAIT, "a decommission proposed", || async {
        let page = app
            .client
            .at(0)
            .provision_requests(pb::ListRequestsRequest {
                team: "payments".into(),
                ..Default::default()
            })
            .await
            .ok()?;
        page.requests
            .into_iter()
            .find(|r| r.action == "decommission" && r.state == "planned")
    })
    .await;
    assert_eq!(proposed.resource, "postgres-staging-payments-api");
    assert_eq!(proposed.requested_by, "worker:gitops");
    assert!(proposed.files.iter().all(|f| f.deleted));
    // Proposed, not done: someone approves it as the policy says.
    assert!(
        remote
            .file("terraform/staging/payments/postgres-payments-api/main.tf.json")
            .is_some()
    );
    bob.approve_request(decide(&proposed.id, "yes, it goes"))
        .await
        .unwrap();
    reaches(&app, &proposed.id, "applied").await;
    assert_eq!(
        remote.file("terraform/staging/payments/postgres-payments-api/main.tf.json"),
        None
    );
    eventually(WAIT, "the resource entity removed", || async {
        let e = app
            .client
            .at(0)
            .get_entity("resource:default/payments-postgres-staging-payments-api")
            .await
            .err()?;
        (e.code() == Code::NotFound).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_argo_cd_application_is_verified_when_argo_cd_reports_it_synced_and_healthy() {
    use crate::argocd_standin::{StandIn, TOKEN};
    let standin = StandIn::start().await;
    let remote = Remote::new();
    std::fs::write(remote.dir.join("argo-token"), TOKEN).unwrap();
    let argocd = remote.dir.join("argocd.yaml");
    std::fs::write(
        &argocd,
        format!(
            "environments:\n  staging:\n    url: {}\n    token_file: {}\n",
            standin.url,
            remote.dir.join("argo-token").display()
        ),
    )
    .unwrap();
    let app = setup_with(&remote, "policy:\n  default: automatic\n", "", |s| {
        s.argocd_config = Some(argocd)
    })
    .await;
    let ns = app
        .client
        .request_resource(namespace("staging"))
        .await
        .unwrap();
    reaches(&app, &ns.id, "applied").await;
    // The namespace's AppProject admits the team's repositories only.
    let project = remote
        .file("namespaces/payments-staging/appproject.yaml")
        .unwrap();
    assert!(project.contains("kind: AppProject"), "{project}");
    let app_of = |service: &str| pb::RequestResourceRequest {
        kind: "argocd-app".into(),
        environment: "staging".into(),
        service: service.into(),
        ..Default::default()
    };
    // A service without a repository has nothing for Argo CD to sync.
    let r = app
        .client
        .request_resource(app_of("payments-api"))
        .await
        .unwrap();
    let failed = reaches(&app, &r.id, "failed").await;
    assert!(
        failed.reason.contains("no repository URL"),
        "{}",
        failed.reason
    );
    let mut checkout = fixtures::service("checkout", "payments");
    checkout.spec.as_mut().unwrap().repository_url = "https://github.com/acme/checkout".into();
    app.client.register_service(checkout).await.unwrap();
    let r = app
        .client
        .request_resource(app_of("checkout"))
        .await
        .unwrap();
    reaches(&app, &r.id, "applied").await;
    let application = remote
        .file("argocd/staging/payments/checkout/application.yaml")
        .unwrap();
    assert!(
        application.contains("project: payments-staging")
            && application.contains("namespace: payments-staging")
            && application.contains("repoURL: https://github.com/acme/checkout"),
        "{application}"
    );
    // Argo CD has not picked it up yet: applied, not verified.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let still = app.client.at(0).provision_request(&r.id).await.unwrap();
    assert_eq!(still.state, "applied");
    // Argo CD syncs the repository and reports the Application synced and healthy.
    standin.add_app("checkout-staging", |_| {});
    let verified = reaches(&app, &r.id, "verified").await;
    assert_eq!(verified.commit, still.commit);
}

#[tokio::test]
async fn two_platforms_writing_one_repository_lose_no_commit_and_never_force() {
    // Two Paved installations (their own logs and databases), one GitOps
    // repository: each writer's pushes race the other's.
    let remote = Remote::new();
    let policy = "policy:\n  default: automatic\n";
    let (a, b) = tokio::join!(setup(&remote, policy, ""), setup(&remote, policy, ""));
    let envs: Vec<String> = (0..6).map(|i| format!("env{i}")).collect();
    let submit = |app: &TestApp, team: &'static str| {
        let client = app.client.clone();
        let envs = envs.clone();
        async move {
            let mut ids = Vec::new();
            for env in &envs {
                let r = pb::RequestResourceRequest {
                    team: team.into(),
                    ..namespace(env)
                };
                ids.push(client.request_resource(r).await.unwrap().id);
            }
            ids
        }
    };
    let (ids_a, ids_b) = tokio::join!(submit(&a, "payments"), submit(&b, "search"));
    let mut commits = std::collections::BTreeSet::new();
    for (app, ids) in [(&a, &ids_a), (&b, &ids_b)] {
        for id in ids {
            commits.insert(reaches(app, id, "applied").await.commit);
        }
    }
    assert_eq!(commits.len(), 12, "one commit per applied plan");
    // Every applied commit is on main: nobody's push overwrote another's.
    let history = git(&remote.bare, &["log", "--format=%H", "main"]);
    for c in &commits {
        assert!(history.lines().any(|l| l == c), "{c} is not on main");
    }
    // Pushes refused as not fast-forward were committed again on the new
    // head: the history is one line of commits.
    let merges = git(&remote.bare, &["log", "--merges", "--format=%H", "main"]);
    assert!(merges.trim().is_empty(), "no merge commits: {merges}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_of_postgres_and_nats_while_provisioning_lose_nothing_and_commit_once() {
    use crate::private::{PrivateNats, PrivatePostgres};
    use std::sync::Arc;
    let pg = Arc::new(PrivatePostgres::start());
    let mut nats = PrivateNats::start("");
    let remote = Remote::new();
    let (db, url) = (pg.url("paved"), nats.url());
    let app = setup_with(&remote, "policy:\n  default: automatic\n", "", |s| {
        s.database_url = db;
        s.nats_url = url;
    })
    .await;
    let envs: Vec<String> = (0..8).map(|i| format!("env{i}")).collect();
    let client = app.client.clone();
    let submitted = tokio::spawn(async move {
        let mut ids = Vec::new();
        for env in envs {
            // One request id per request: retried as long as it takes.
            let mut r = namespace(&env);
            r.request_id = format!("fault-{env}");
            let id = loop {
                match client.request_resource(r.clone()).await {
                    Ok(done) => break done.id,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            ids.push(id);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        ids
    });
    // PostgreSQL crashes, NATS is killed, PostgreSQL crashes again, while
    // requests are planned, committed and recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.start_again();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    let ids = submitted.await.unwrap();
    assert_eq!(ids.len(), 8);
    for id in &ids {
        eventually(
            Duration::from_secs(90),
            &format!("{id} applied"),
            || async {
                let r = app.client.at(0).provision_request(id).await.ok()?;
                assert_ne!(r.state, "failed", "{id}: {}", r.reason);
                (r.state == "applied").then_some(())
            },
        )
        .await;
        assert_eq!(remote.commits_for(id).len(), 1, "{id}: one commit");
    }
    let events = tenancy_events(&app, "payments").await;
    let count = |t: &str| events.iter().filter(|e| **e == t).count();
    assert_eq!(count("ProvisionRequested"), 8);
    assert_eq!(count("ProvisionApplied"), 8, "one outcome per request");
    // The read model equals a fresh replay of the log.
    let (_, checks) = paved_workers::runtime::check(
        &[paved_workers::projections::ProvisioningProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(checks.iter().all(|c| !c.drifted()), "{checks:?}");
    drop(app);
}
