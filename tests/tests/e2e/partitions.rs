//! The delivery read model split by service across workers: each share has
//! its own worker, lease and checkpoint; together they write exactly what
//! one worker writes, a rebuild either way agrees, and a change of the split
//! continues where the workers stood (or asks for a rebuild when it cannot).

use std::time::Duration;

use chrono::Utc;
use paved::Roles;
use paved_eventlog::codec::timestamp;
use paved_eventlog::readmodel::Partition;
use paved_sdk::pb;
use paved_workers::projections::DeliveryProjection;
use paved_workers::{Health, ProjectionStatus, ProjectionWorker, runtime};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, eventually, fixtures, spawn_with};

const SERVICES: [&str; 6] = [
    "ledger",
    "checkout",
    "payments-api",
    "search",
    "billing",
    "catalog-api",
];

/// Row count and digest of each delivery table.
async fn tables(pool: &PgPool) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for table in [
        "delivery_deployments",
        "delivery_changes",
        "delivery_incidents",
    ] {
        out.push(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
            )))
            .fetch_one(pool)
            .await
            .unwrap(),
        );
    }
    out
}

/// The delivery checkpoint rows, by name.
async fn checkpoints(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE projection LIKE 'delivery%' ORDER BY projection",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn names(rows: &[(String, i64)]) -> Vec<&str> {
    rows.iter().map(|(n, _)| n.as_str()).collect()
}

/// Every service's changes, a recorded deployment shipping two of them, an
/// incident it caused (opened and resolved) and, with Argo CD, a deployment
/// requested through Paved (requested, started and finished in separate
/// commits). Returns the requested deployments' ids.
async fn activity(app: &TestApp, round: u32, through_argo: bool) -> Vec<String> {
    let c = &app.client;
    let now = Utc::now();
    let mut requested = Vec::new();
    for (i, service) in SERVICES.iter().enumerate() {
        let sha = |k: usize| format!("{:08x}{:032x}", round, i * 10 + k);
        for k in 0..3 {
            let committed = now - chrono::Duration::minutes(60 - 10 * k as i64);
            c.record_change(pb::RecordChangeRequest {
                request_id: format!("chg-{round}-{i}-{k}"),
                sha: sha(k),
                service: (*service).into(),
                committed_at: Some(timestamp(committed)),
                merged_at: Some(timestamp(committed + chrono::Duration::minutes(5))),
                author: "dev".into(),
                title: "a change".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let recorded = c
            .record_deployment(pb::RecordDeploymentRequest {
                request_id: format!("rec-{round}-{i}"),
                target: Some(pb::DeploymentTarget {
                    service: (*service).into(),
                    environment: "production".into(),
                    revision: sha(1),
                    commits: vec![sha(0), sha(1)],
                    ..Default::default()
                }),
                source: "pipeline".into(),
                started_at: Some(timestamp(now - chrono::Duration::minutes(10))),
                outcome: Some(pb::DeploymentOutcome {
                    succeeded: true,
                    phase: "Succeeded".into(),
                    health: "Healthy".into(),
                    finished_at: Some(timestamp(now - chrono::Duration::minutes(8))),
                    ..Default::default()
                }),
                expected_version: None,
            })
            .await
            .unwrap();
        let incident = format!("inc-{round}-{i}");
        c.open_incident(pb::OpenIncidentRequest {
            request_id: format!("open-{incident}"),
            id: incident.clone(),
            title: format!("{service} degraded"),
            services: vec![(*service).into()],
            severity: "sev2".into(),
            started_at: Some(timestamp(now - chrono::Duration::minutes(7))),
            caused_by_deployment: recorded.id,
            expected_version: None,
        })
        .await
        .unwrap();
        c.resolve_incident(pb::ResolveIncidentRequest {
            request_id: format!("resolve-{incident}"),
            incident,
            resolved_at: Some(timestamp(now - chrono::Duration::minutes(1))),
            expected_version: None,
        })
        .await
        .unwrap();
        if through_argo {
            let d = c
                .request_deployment(pb::RequestDeploymentRequest {
                    request_id: format!("req-{round}-{i}"),
                    service: (*service).into(),
                    environment: "production".into(),
                    revision: sha(2),
                    ..Default::default()
                })
                .await
                .unwrap();
            requested.push(d.id);
        }
    }
    requested
}

/// Runs the delivery projection split `count` ways (a worker per share)
/// until every share has reached `to`; stops them and returns their status.
async fn run_shares(app: &TestApp, count: u32, to: u64) -> Vec<ProjectionStatus> {
    let stop = CancellationToken::new();
    let mut statuses = Vec::new();
    let mut tasks = Vec::new();
    for share in DeliveryProjection::shares(count) {
        let worker = ProjectionWorker::new(share, app.pool.clone(), app.log.clone());
        statuses.push(worker.status());
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }
    eventually(
        Duration::from_secs(30),
        "every share reaches the end",
        || {
            let statuses = statuses.clone();
            async move {
                statuses
                    .iter()
                    .all(|s| s.borrow().checkpoint >= to)
                    .then_some(())
            }
        },
    )
    .await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    statuses.iter().map(|s| s.borrow().clone()).collect()
}

async fn no_drift(app: &TestApp, parts: &[DeliveryProjection]) {
    let (_, checks) = runtime::check(parts, &app.pool, &app.log, &Default::default(), |_| {})
        .await
        .unwrap();
    assert!(
        checks.iter().all(|c| !c.drifted() && c.live_rows > 0),
        "{checks:?}"
    );
}

async fn all_succeeded(app: &TestApp, at: u64, expected: usize) {
    let listed = app
        .client
        .at(at)
        .list_deployments(pb::ListDeploymentsRequest {
            team: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), expected);
    assert!(listed.iter().all(|d| d.status == "succeeded"), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_split_two_ways_writes_what_one_worker_writes() {
    let (app, argo) = crate::argocd::setup_with(10, |s| s.delivery_partitions = 2).await;
    for service in &SERVICES[1..] {
        app.client
            .register_service(fixtures::service(service, "payments"))
            .await
            .unwrap();
    }
    for service in SERVICES {
        argo.add_app(&format!("{service}-production"), |_| {});
    }
    // The split is by service: both shares own some of these.
    for share in Partition::all(2) {
        assert!(SERVICES.iter().any(|s| share.owns(s)), "{share:?}");
        assert!(!SERVICES.iter().all(|s| share.owns(s)), "{share:?}");
    }
    for id in activity(&app, 1, true).await {
        crate::argocd::finished(&app, &id).await;
    }
    // Reads wait for every share: all twelve deployments, finished.
    let last = app.last_sequence().await;
    all_succeeded(&app, last, 12).await;
    assert_eq!(
        names(&checkpoints(&app.pool).await),
        ["delivery-0of2", "delivery-1of2"],
        "a checkpoint per share, none for the whole"
    );
    no_drift(&app, &DeliveryProjection::shares(2)).await;
    let split = tables(&app.pool).await;
    let dora = app
        .client
        .at(last)
        .dora(pb::GetDoraRequest {
            team: "payments".into(),
            window_days: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dora.deployments, 12, "{dora:?}");

    // Rebuilt by one worker: the very same rows.
    runtime::rebuild(
        &[DeliveryProjection::default()],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(tables(&app.pool).await, split);

    // The running shares find their checkpoints replaced by the whole one
    // and take it over (split again from where it stands), then go on.
    eventually(Duration::from_secs(20), "the shares take over", || async {
        let rows = checkpoints(&app.pool).await;
        (names(&rows) == ["delivery-0of2", "delivery-1of2"]).then_some(())
    })
    .await;
    for id in activity(&app, 2, true).await {
        crate::argocd::finished(&app, &id).await;
    }
    let last = app.last_sequence().await;
    all_succeeded(&app, last, 24).await;
    no_drift(&app, &DeliveryProjection::shares(2)).await;
    let again = app
        .client
        .at(last)
        .dora(pb::GetDoraRequest {
            team: "payments".into(),
            window_days: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.deployments, 24, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_split_continues_where_the_workers_stood_or_asks_for_a_rebuild() {
    // The API alone: the test runs the delivery workers itself.
    let app = spawn_with(Roles::API).await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    for service in SERVICES {
        app.client
            .register_service(fixtures::service(service, "payments"))
            .await
            .unwrap();
    }
    activity(&app, 1, false).await;
    let first = app.last_sequence().await;
    run_shares(&app, 1, first).await;
    let whole = checkpoints(&app.pool).await;
    assert_eq!(names(&whole), ["delivery"]);
    let stood = whole[0].1 as u64;

    // Split two ways: both shares start where the one worker stood, so each
    // reads only what came after (nothing skipped, nothing applied again).
    activity(&app, 2, false).await;
    let second = app.last_sequence().await;
    let filter = app.log.context_filter("delivery");
    let (after, _) = app.log.backlog(&filter, stood).await.unwrap();
    assert!(after > 0);
    let shares = run_shares(&app, 2, second).await;
    for s in &shares {
        assert_eq!(s.applied_messages, after, "{} read from {stood}", s.name);
    }
    assert_eq!(
        names(&checkpoints(&app.pool).await),
        ["delivery-0of2", "delivery-1of2"]
    );
    no_drift(&app, &DeliveryProjection::shares(2)).await;

    // Shares stopped at different places cannot be continued by one worker
    // exactly: it does not start, and changes nothing.
    sqlx::query(
        "UPDATE projection_checkpoints SET last_sequence = last_sequence - 1
          WHERE projection = 'delivery-0of2'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let stuck = checkpoints(&app.pool).await;
    let worker = ProjectionWorker::new(
        DeliveryProjection::default(),
        app.pool.clone(),
        app.log.clone(),
    );
    let status = worker.status();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status.borrow().health, Health::Starting);
    assert_eq!(checkpoints(&app.pool).await, stuck);
    // A check with the wrong split says so and changes nothing either.
    let e = runtime::check(
        &[DeliveryProjection::default()],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no checkpoint \"delivery\""), "{e}");
    stop.cancel();
    task.await.unwrap().unwrap();

    // A rebuild with the new split replaces the shares' checkpoints.
    runtime::rebuild(
        &[DeliveryProjection::default()],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(names(&checkpoints(&app.pool).await), ["delivery"]);
    let whole = run_shares(&app, 1, second).await;
    assert_eq!(
        whole[0].applied_messages, 0,
        "the rebuild left nothing to do"
    );
    no_drift(&app, &[DeliveryProjection::default()]).await;
}
