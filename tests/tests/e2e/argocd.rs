//! Deployments through Argo CD, against the stand-in: restarts at every
//! step, serialised syncs, Argo CD busy or down, an auto-sync replacing ours,
//! rollbacks.

use std::time::Duration;

use paved::Roles;
use paved_domain::delivery::Deployment;
use paved_domain::{Event, Name};
use paved_sdk::pb;

use crate::argocd_standin::{StandIn, TOKEN};
use crate::helpers::{TestApp, eventually, fixtures, spawn_configured};

/// Paved with the stand-in as production's Argo CD.
async fn setup(budget_secs: u64) -> (TestApp, StandIn) {
    setup_with(budget_secs, |_| {}).await
}

/// [`setup`] with more settings changed by `configure`.
pub(crate) async fn setup_with(
    budget_secs: u64,
    configure: impl FnOnce(&mut paved::Settings),
) -> (TestApp, StandIn) {
    let standin = StandIn::start().await;
    let dir = std::env::temp_dir().join(format!("paved-argocd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let config = format!(
        "environments:\n  production:\n    url: {}\n    token_file: {}\ntiming:\n  poll_ms: 50\n  scan_ms: 50\n  retry_min_ms: 50\n  retry_max_ms: 300\n  budget_secs: {budget_secs}\n  request_timeout_secs: 2\n",
        standin.url,
        dir.join("token").display()
    );
    std::fs::write(dir.join("argocd.yaml"), config).unwrap();
    let path = dir.join("argocd.yaml");
    let app = spawn_configured(Roles::ALL, |s| {
        s.argocd_config = Some(path);
        s.argocd_webhook_token = Some("argo-note".into());
        configure(s);
    })
    .await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    app.client
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    (app, standin)
}

async fn deploy(app: &TestApp, revision: &str) -> String {
    app.client
        .request_deployment(pb::RequestDeploymentRequest {
            service: "ledger".into(),
            environment: "production".into(),
            revision: revision.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

/// The deployment's event types, from the log.
async fn events(app: &TestApp, id: &str) -> Vec<&'static str> {
    let subject = app.log.subject(
        paved_domain::AggregateKind::Deployment,
        &Name::parse(id).unwrap(),
    );
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
        .map(|e: Event| e.type_name())
        .collect()
}

pub(crate) async fn finished(app: &TestApp, id: &str) -> Deployment {
    let id = Name::parse(id).unwrap();
    eventually(Duration::from_secs(20), "the deployment finishes", || {
        let (executor, id) = (
            paved_eventlog::Executor::new(app.log.clone(), 10),
            id.clone(),
        );
        async move {
            let d = executor
                .state::<Option<Deployment>>(&id)
                .await
                .unwrap()
                .state?;
            d.status.finished().then_some(d)
        }
    })
    .await
}

async fn running(app: &TestApp, id: &str) {
    let id = Name::parse(id).unwrap();
    eventually(Duration::from_secs(10), "the deployment runs", || {
        let (executor, id) = (
            paved_eventlog::Executor::new(app.log.clone(), 10),
            id.clone(),
        );
        async move {
            let d = executor
                .state::<Option<Deployment>>(&id)
                .await
                .unwrap()
                .state?;
            (d.status == paved_domain::delivery::DeploymentStatus::Running).then_some(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_deployment_syncs_once_and_records_its_outcome() {
    let (app, argo) = setup(10).await;
    argo.add_app("ledger-production", |_| {});
    let id = deploy(&app, "4f2a9c1").await;
    let d = finished(&app, &id).await;
    let o = d.outcome.clone().unwrap();
    assert!(o.succeeded, "{o:?}");
    assert_eq!(
        (o.phase.as_str(), o.health.as_str(), o.revision.as_str()),
        ("Succeeded", "Healthy", "4f2a9c1")
    );
    assert_eq!(d.application.as_deref(), Some("ledger-production"));
    assert_eq!(argo.started("ledger-production"), std::slice::from_ref(&id));
    assert_eq!(
        events(&app, &id).await,
        [
            "DeploymentRequested",
            "DeploymentStarted",
            "DeploymentSucceeded"
        ]
    );
    // A failing sync is a failed deployment with Argo CD's message.
    argo.with(|i| i.apps.get_mut("ledger-production").unwrap().outcome = "Failed");
    let id = deploy(&app, "bad").await;
    let o = finished(&app, &id).await.outcome.unwrap();
    assert!(!o.succeeded);
    assert_eq!(o.phase, "Failed");
    assert!(o.message.contains("failed to apply"), "{}", o.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_sync_call_neither_syncs_again_nor_loses_the_outcome() {
    let (mut app, argo) = setup(10).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_millis(800)
    });
    argo.with(|i| i.sync_answer_delay = Duration::from_secs(3));
    let id = deploy(&app, "v2").await;
    eventually(Duration::from_secs(10), "Argo CD got the sync", || async {
        (argo.started("ledger-production").len() == 1).then_some(())
    })
    .await;
    // Killed while the sync call is still unanswered: nothing recorded yet.
    app.crash_and_restart().await;
    argo.with(|i| i.sync_answer_delay = Duration::ZERO);
    let d = finished(&app, &id).await;
    assert!(d.outcome.unwrap().succeeded);
    assert_eq!(
        argo.started("ledger-production"),
        std::slice::from_ref(&id),
        "one sync"
    );
    assert_eq!(
        events(&app, &id).await,
        [
            "DeploymentRequested",
            "DeploymentStarted",
            "DeploymentSucceeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_polling_resumes_the_same_operation() {
    let (mut app, argo) = setup(10).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_secs(2)
    });
    let id = deploy(&app, "v3").await;
    running(&app, &id).await;
    app.crash_and_restart().await;
    let d = finished(&app, &id).await;
    assert!(d.outcome.unwrap().succeeded);
    assert_eq!(argo.started("ledger-production").len(), 1);
    assert_eq!(
        events(&app, &id).await,
        [
            "DeploymentRequested",
            "DeploymentStarted",
            "DeploymentSucceeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_down_then_up_and_a_crash_before_the_call() {
    let (mut app, argo) = setup(20).await;
    argo.add_app("ledger-production", |_| {});
    argo.with(|i| i.down_until = Some(std::time::Instant::now() + Duration::from_secs(60)));
    let id = deploy(&app, "v4").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.crash_and_restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    argo.with(|i| i.down_until = None);
    let d = finished(&app, &id).await;
    assert!(d.outcome.unwrap().succeeded);
    assert_eq!(argo.started("ledger-production").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_unreachable_past_the_budget_fails_with_the_reason() {
    let (app, argo) = setup(1).await;
    argo.add_app("ledger-production", |_| {});
    argo.with(|i| i.down_until = Some(std::time::Instant::now() + Duration::from_secs(60)));
    let id = deploy(&app, "v5").await;
    let o = finished(&app, &id).await.outcome.unwrap();
    assert!(!o.succeeded);
    assert!(
        o.message.contains("unreachable") && o.message.contains("gave up"),
        "{}",
        o.message
    );
    assert!(argo.started("ledger-production").is_empty());
    // No Argo CD for an environment: failed at once, with the reason.
    let id = app
        .client
        .request_deployment(pb::RequestDeploymentRequest {
            service: "ledger".into(),
            environment: "staging".into(),
            revision: "v5".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let o = finished(&app, &id).await.outcome.unwrap();
    assert!(
        o.message.contains("no Argo CD is configured"),
        "{}",
        o.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_of_one_application_are_serialised_and_busy_argo_cd_is_waited_for() {
    let (app, argo) = setup(10).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_millis(400)
    });
    // Someone else's sync is running when ours arrive.
    argo.start_external("ledger-production", Duration::from_secs(2));
    let a = deploy(&app, "va").await;
    let b = deploy(&app, "vb").await;
    let (da, db) = (finished(&app, &a).await, finished(&app, &b).await);
    assert!(da.outcome.as_ref().unwrap().succeeded && db.outcome.as_ref().unwrap().succeeded);
    let started = argo.started("ledger-production");
    assert_eq!(started.len(), 2, "one sync each");
    // Only the stranger's operation ever made Paved wait: Paved's own two
    // never overlapped (each refused call is counted by the stand-in).
    let conflicts = argo.with(|i| i.conflicts);
    assert!(
        conflicts >= 1,
        "Paved retried while the other operation ran"
    );
    let (first, second) = if started[0] == a {
        (&da, &db)
    } else {
        (&db, &da)
    };
    assert!(first.finished_at.unwrap() <= second.started_at.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_sync_replacing_ours_is_not_taken_for_our_outcome() {
    let (app, argo) = setup(10).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_millis(600);
        a.auto_sync_after = true;
    });
    let id = deploy(&app, "v6").await;
    let o = finished(&app, &id).await.outcome.unwrap();
    // Ours succeeded (per history); the auto-sync that replaced it is
    // still running and would fail: neither decides our outcome.
    assert!(o.succeeded, "{o:?}");
    assert_eq!(o.revision, "v6");
    assert!(o.message.contains("per history"), "{}", o.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_goes_through_argo_cd_and_counts_as_a_change_failure() {
    let (app, argo) = setup(10).await;
    argo.add_app("ledger-production", |_| {});
    let good = deploy(&app, "good").await;
    assert!(finished(&app, &good).await.outcome.unwrap().succeeded);
    let bad = deploy(&app, "bad").await;
    assert!(finished(&app, &bad).await.outcome.unwrap().succeeded);
    let rollback = app
        .client
        .request_rollback(pb::RequestRollbackRequest {
            deployment: bad.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let d = finished(&app, &rollback.id).await;
    assert_eq!(d.target.revision, "good");
    assert_eq!(
        d.target.rollback_of.as_ref().map(Name::as_str),
        Some(bad.as_str())
    );
    assert!(d.outcome.unwrap().succeeded);
    assert_eq!(argo.started("ledger-production").len(), 3);
    let seq = app.last_sequence().await;
    let dora = app
        .client
        .at(seq)
        .dora(pb::GetDoraRequest {
            service: "ledger".into(),
            window_days: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            dora.finished_deployments,
            dora.change_failures,
            dora.rework_deployments
        ),
        (3, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_call_that_times_out_is_not_repeated_once_argo_cd_took_it() {
    // Argo CD starts the operation but answers after the client's 2 s timeout.
    let (app, argo) = setup(20).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_millis(300)
    });
    argo.with(|i| i.sync_answer_delay = Duration::from_secs(3));
    let id = deploy(&app, "v7").await;
    let d = finished(&app, &id).await;
    assert!(d.outcome.unwrap().succeeded);
    assert_eq!(
        argo.started("ledger-production"),
        std::slice::from_ref(&id),
        "one sync"
    );
    assert_eq!(
        events(&app, &id).await,
        [
            "DeploymentRequested",
            "DeploymentStarted",
            "DeploymentSucceeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_of_one_application_run_in_the_order_they_were_requested() {
    let (app, argo) = setup(20).await;
    argo.add_app("ledger-production", |a| {
        a.sync_duration = Duration::from_millis(150)
    });
    // The first one busy in Argo CD while the others pile up; the deployer
    // then finds several pending at once.
    let mut ids = vec![deploy(&app, "rev-1").await];
    running(&app, &ids[0]).await;
    for i in 2..=6 {
        ids.push(deploy(&app, &format!("rev-{i}")).await);
    }
    for id in &ids {
        assert!(finished(&app, id).await.outcome.unwrap().succeeded);
    }
    // One operation each, in request order: the last requested runs last.
    assert_eq!(argo.started("ledger-production"), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_never_reached_argo_cd_is_no_deployment_for_dora() {
    // No Argo CD configured at all.
    let app = crate::helpers::spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    let id = deploy(&app, "v1").await;
    let d = finished(&app, &id).await;
    assert_eq!(
        d.status,
        paved_domain::delivery::DeploymentStatus::NotStarted
    );
    assert!(
        d.outcome
            .unwrap()
            .message
            .contains("no Argo CD is configured")
    );
    let last = app.last_sequence().await;
    let shown = c.at(last).get_deployment(&id).await.unwrap();
    assert_eq!(shown.status, "not_started");
    let dora = c
        .at(last)
        .dora(pb::GetDoraRequest {
            team: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((dora.finished_deployments, dora.change_failures), (0, 0));
    assert_eq!(dora.change_failure_rate, None);
}
