//! The projection runtime: crash-safe, exactly-once in effect, rebuildable,
//! and loud about what it cannot decode.

use std::time::Duration;

use bytes::Bytes;
use paved::Roles;
use paved_sdk::pb;
use paved_workers::projections::CatalogProjection;
use paved_workers::runtime::{self, analyze_stale, rebuild};
use paved_workers::{Health, ProjectionWorker};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, eventually, fixtures, spawn_with};

/// Every row of every catalog table, as JSON text, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("catalog_teams", "name"),
        ("catalog_systems", "name"),
        ("catalog_services", "name"),
        ("catalog_dependencies", "service, depends_on"),
    ] {
        let r: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT '{table} ' || to_jsonb(t)::text FROM {table} t ORDER BY {order}"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        rows.extend(r);
    }
    rows
}

async fn checkpoint(pool: &PgPool) -> u64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT COALESCE(MAX(last_sequence), 0) FROM projection_checkpoints WHERE projection = 'catalog'",
    )
    .fetch_one(pool)
    .await
    .unwrap() as u64
}

/// A burst of commands of every kind, some of them concurrent.
async fn write_burst(app: &TestApp, round: usize) {
    let c = &app.client;
    let team = format!("team-{round}");
    c.create_team(pb::CreateTeamRequest {
        members: vec!["alice".into(), "bob".into()],
        ..fixtures::team(&team)
    })
    .await
    .unwrap();
    let mut calls = Vec::new();
    for i in 0..30 {
        let c = c.clone();
        let team = team.clone();
        calls.push(tokio::spawn(async move {
            let name = format!("svc-{round}-{i}");
            c.register_service(fixtures::service(&name, &team))
                .await
                .unwrap();
            if i > 0 {
                c.add_dependency(pb::AddDependencyRequest {
                    service: name.clone(),
                    depends_on: format!("svc-{round}-0"),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            if i % 3 == 0 {
                c.update_service(pb::UpdateServiceRequest {
                    name: name.clone(),
                    spec: Some(pb::ServiceSpec {
                        description: format!("round {round}"),
                        ..Default::default()
                    }),
                    update_mask: Some(paved_proto::wkt::FieldMask {
                        paths: vec!["description".into()],
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            if i % 5 == 0 {
                c.deprecate_service(pb::DeprecateServiceRequest {
                    name,
                    reason: "v2".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    c.remove_team_member(pb::RemoveTeamMemberRequest {
        team,
        member: "bob".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn killing_the_worker_mid_batch_loses_nothing_and_applies_nothing_twice() {
    let app = spawn_with(Roles::API).await;
    // Crash the worker at different points while commands keep arriving.
    for (round, kill_after_ms) in [1u64, 4, 9, 17, 33, 70].into_iter().enumerate() {
        let worker = ProjectionWorker::new(CatalogProjection, app.pool.clone(), app.log.clone());
        let task = tokio::spawn(worker.run(CancellationToken::new()));
        write_burst(&app, round).await;
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        task.abort();
        let _ = task.await;
    }
    let last = app.last_sequence().await;
    let worker = ProjectionWorker::new(CatalogProjection, app.pool.clone(), app.log.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    eventually(
        Duration::from_secs(30),
        "the projection to catch up",
        || async { (checkpoint(&app.pool).await >= last).then_some(()) },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let live = snapshot(&app.pool).await;
    assert_eq!(
        live.iter()
            .filter(|r| r.starts_with("catalog_services "))
            .count(),
        6 * 30
    );

    // A fresh replay of the whole log gives the same rows, row for row.
    let report = rebuild(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.checkpoint, last);
    assert_eq!(snapshot(&app.pool).await, live);
}

#[tokio::test]
async fn a_rebuild_while_serving_gives_identical_rows() {
    let app = crate::helpers::spawn_app().await;
    write_burst(&app, 0).await;
    let last = app.last_sequence().await;
    let c = &app.client;
    c.at(last).get_team("team-0").await.unwrap();
    let before = snapshot(&app.pool).await;
    let mut progress = Vec::new();
    let report = rebuild(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |p| progress.push(p.applied),
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&app.pool).await, before);
    // Every row is new: the tables' statistics are taken afresh, so reads
    // plan from what is there (autovacuum may be off, or late).
    let unanalyzed: Vec<String> = sqlx::query_scalar(
        r"SELECT relname::text FROM pg_stat_user_tables
          WHERE relname LIKE 'catalog\_%' AND last_analyze IS NULL",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(unanalyzed.is_empty(), "{unanalyzed:?}");
    assert!(report.messages >= 31);
    assert_eq!(progress.last().copied(), Some(report.messages));
    // The shadow schema is gone and the live worker carries on.
    let done = c
        .register_service(fixtures::service("after", "team-0"))
        .await
        .unwrap();
    c.at(done.sequence).get_service("after").await.unwrap();
    let shadow: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(runtime::shadow_schema("catalog"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!shadow);
}

#[tokio::test]
async fn an_undecodable_message_stops_the_projection_loudly() {
    let app = spawn_with(Roles::API).await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    // Something that is not a paved.v1.Commit lands on a catalog subject.
    let subject = format!("{}.catalog.service.garbage", app.settings.subject_prefix);
    let bad = app
        .log
        .jetstream()
        .publish(subject, Bytes::from_static(b"\xff\xffnot protobuf"))
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();

    let worker = ProjectionWorker::new(CatalogProjection, app.pool.clone(), app.log.clone());
    let mut status = worker.status();
    let result = worker.run(CancellationToken::new()).await;
    assert!(
        matches!(result, Err(paved_workers::ProjectionError::Decode { sequence, .. }) if sequence == bad),
        "{result:?}"
    );
    let s = status.borrow_and_update().clone();
    assert!(matches!(s.health, Health::Failed(_)));
    assert_eq!(s.decode_errors, 1);
    assert!(checkpoint(&app.pool).await < bad, "never skipped past it");
    let ledger: Option<String> =
        sqlx::query_scalar("SELECT name FROM catalog_services WHERE name = 'ledger'")
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    assert_eq!(ledger, None, "nothing after it was applied");
}

#[tokio::test]
async fn a_halted_projection_shows_its_backlog_and_the_overall_health_says_so() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let app = crate::helpers::spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let subject = format!("{}.catalog.service.garbage", app.settings.subject_prefix);
    app.log
        .jetstream()
        .publish(subject, Bytes::from_static(b"\xff\xffnot protobuf"))
        .await
        .unwrap()
        .await
        .unwrap();
    for i in 0..10 {
        c.register_service(fixtures::service(&format!("s{i}"), "payments"))
            .await
            .unwrap();
    }
    let line = |body: &str, metric: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(&format!("{metric}{{projection=\"catalog\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let body = eventually(Duration::from_secs(10), "the halt in /metrics", || async {
        let body = app.scrape().await;
        (line(&body, "paved_projection_healthy") == Some(0.0)).then_some(body)
    })
    .await;
    // The poison message and the ten registrations behind it.
    assert_eq!(
        line(&body, "paved_projection_pending_messages"),
        Some(11.0),
        "{body}"
    );
    assert!(line(&body, "paved_projection_lag_seconds").unwrap() >= 0.0);
    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let overall = eventually(Duration::from_secs(10), "overall NOT_SERVING", || {
        let mut h = health.clone();
        async move {
            let s = h
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .status();
            (s == ServingStatus::NotServing).then_some(s)
        }
    })
    .await;
    assert_eq!(overall, ServingStatus::NotServing);
    // The API itself still serves.
    let api = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "paved.v1.CatalogService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(api, ServingStatus::Serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_quarantines_a_poison_message_and_everything_carries_on() {
    let app = crate::helpers::spawn_configured(paved::Roles::ALL, |s| s.read_wait_ms = 300).await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let subject = format!("{}.catalog.service.garbage", app.settings.subject_prefix);
    let bad = app
        .log
        .jetstream()
        .publish(subject, Bytes::from_static(b"\xff\xffnot protobuf"))
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let after = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    // Stuck: the catalog does not get past the poison.
    let once = c.clone().with_retry(paved_sdk::RetryPolicy {
        max_retries: 0,
        ..Default::default()
    });
    let e = once
        .at(after.sequence)
        .get_service("ledger")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);

    // Not for a commit that decodes, nor for a projection that does not exist.
    let settings = &app.settings;
    assert!(
        paved::operations::quarantine(settings, after.sequence, &[], "no", "alice")
            .await
            .is_err()
    );
    assert!(
        paved::operations::quarantine(settings, bad, &["nope".into()], "no", "alice")
            .await
            .is_err()
    );
    let done = paved::operations::quarantine(
        settings,
        bad,
        &[],
        "bytes from a misconfigured test publisher",
        "alice",
    )
    .await
    .unwrap();
    // Every projection carries on past it (halted workers look every 5 s).
    eventually(
        Duration::from_secs(30),
        "the catalog past the poison",
        || async {
            once.at(done.record_sequence)
                .get_service("ledger")
                .await
                .ok()
        },
    )
    .await;

    // The record is in the audit trail: who, why.
    let mut s = c
        .read_events(pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                event_types: vec!["MessageQuarantined".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let record = s.message().await.unwrap().unwrap();
    assert_eq!(record.principal, "operator:alice");
    assert_eq!(record.reason, "bytes from a misconfigured test publisher");

    // `audit verify` reports it quarantined, not altered.
    let key = paved_workers::checkpoint::signing_key(&app.pool, None)
        .await
        .unwrap();
    let mut keys = paved_eventlog::audit::TrustedKeys::default();
    keys.add(key.verifying_key());
    let report = paved_eventlog::audit::verify_log(&app.log, keys.clone(), 1, |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].sequence, bad);
    // A replay passes over it too, and equals the live rows.
    let (_, checks) = runtime::check(&[CatalogProjection], &app.pool, &app.log, &keys, |_| {})
        .await
        .unwrap();
    assert!(checks.iter().all(|c| !c.drifted()), "{checks:?}");
    // Without the key, neither is the quarantine honoured.
    let unsigned = paved_eventlog::audit::verify_log(&app.log, Default::default(), 1, |_, _| {})
        .await
        .unwrap();
    assert!(!unsigned.ok());
}

/// An API entity owned by `team-0` (part of a system that is not there).
fn api(name: &str, description: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "API",
        "metadata": {"name": name, "description": description},
        "spec": {"type": "openapi", "lifecycle": "production", "owner": "group:team-0",
                 "system": "nowhere", "definition": "openapi: 3.0.0"},
    })
}

/// Runs an entity command on the API `name` through the write path, as an admin.
async fn on_api(
    exec: &paved_eventlog::Executor,
    name: &str,
    command: paved_domain::catalog::EntityCommand,
    key: &str,
) {
    let entity_ref = paved_domain::catalog::entity_ref(&api(name, "")).unwrap();
    exec.execute::<Option<paved_domain::catalog::Entity>>(
        &entity_ref.id(),
        &command,
        &paved_eventlog::CommandMeta::new(key, paved_domain::Principal::admin("ops")),
    )
    .await
    .unwrap();
}

async fn store_api(exec: &paved_eventlog::Executor, name: &str, description: &str, key: &str) {
    let document = api(name, description);
    on_api(
        exec,
        name,
        paved_domain::catalog::EntityCommand::Store { document },
        key,
    )
    .await;
}

async fn remove_api(exec: &paved_eventlog::Executor, name: &str, key: &str) {
    on_api(
        exec,
        name,
        paved_domain::catalog::EntityCommand::Remove,
        key,
    )
    .await;
}

/// A rebuild folds many batches into one window in memory and writes each
/// row once; whatever the batch and window sizes, its rows are the live
/// worker's, row for row, in every catalog table (teams, systems, services,
/// dependencies, repository claims, entities stored, replaced, removed and
/// stored again, their relations).
#[tokio::test]
async fn a_rebuild_folding_many_batches_in_memory_gives_the_live_rows_in_every_table() {
    let app = crate::helpers::spawn_app().await;
    let c = &app.client;
    write_burst(&app, 0).await;
    c.create_system(pb::CreateSystemRequest {
        name: "checkout".into(),
        owner: "team-0".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..8 {
        let mut service = fixtures::service(&format!("repo-{i}"), "team-0");
        let spec = service.spec.as_mut().unwrap();
        spec.repository_url = format!("https://github.com/acme/repo-{i}");
        spec.system = "checkout".into();
        c.register_service(service).await.unwrap();
    }
    write_burst(&app, 1).await;
    let exec = paved_eventlog::Executor::new(app.log.clone(), 10);
    for i in 0..6 {
        store_api(&exec, &format!("api-{i}"), "first", &format!("store-{i}")).await;
    }
    // Replaced; removed; removed and stored again (created anew).
    store_api(&exec, "api-1", "second", "replace-1").await;
    remove_api(&exec, "api-2", "remove-2").await;
    remove_api(&exec, "api-3", "remove-3").await;
    store_api(&exec, "api-3", "again", "again-3").await;
    store_api(&exec, "api-3", "and again", "again-again-3").await;
    let last = app.last_sequence().await;
    eventually(
        Duration::from_secs(30),
        "the live projection to catch up",
        || async { (checkpoint(&app.pool).await >= last).then_some(()) },
    )
    .await;

    let entities: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_entities")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(entities, 5, "api-2 is gone");
    for limits in [
        runtime::RebuildLimits {
            batch: 1,
            window_rows: 1,
        },
        runtime::RebuildLimits {
            batch: 7,
            window_rows: 10,
        },
        runtime::RebuildLimits {
            batch: 40,
            window_rows: 1_000,
        },
        runtime::RebuildLimits::default(),
    ] {
        let (report, checks) = runtime::check_with(
            &[CatalogProjection],
            &app.pool,
            &app.log,
            &Default::default(),
            |_| {},
            limits,
        )
        .await
        .unwrap();
        assert_eq!(report.checkpoint, last);
        assert_eq!(checks.len(), 7, "{checks:?}");
        for check in &checks {
            assert!(check.live_rows > 0, "{limits:?}: {check:?}");
            assert!(!check.drifted(), "{limits:?}: {check:?}");
        }
    }
}

/// A worker analyzes its tables by autovacuum's own rule (more than 50
/// rows plus a tenth of the table changed since the last `ANALYZE`): those
/// that changed that much, once, and then not again until they change.
#[tokio::test]
async fn tables_changed_past_autovacuums_threshold_are_analyzed_once() {
    let app = crate::helpers::spawn_app().await;
    // 60 services, dependencies on one of them, updates: catalog_services
    // and catalog_dependencies change by more than 50 rows.
    for round in 0..2 {
        write_burst(&app, round).await;
    }
    let last = app.last_sequence().await;
    app.client.at(last).get_team("team-1").await.unwrap();
    // The cumulative statistics reach pg_stat_user_tables a moment later.
    eventually(
        Duration::from_secs(10),
        "the changes to reach the statistics",
        || async {
            let changed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_user_tables WHERE n_mod_since_analyze > 50
                    AND relname IN ('catalog_services', 'catalog_dependencies')",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            (changed == 2).then_some(())
        },
    )
    .await;
    let analyzed = analyze_stale::<CatalogProjection>(&app.pool).await.unwrap();
    assert!(
        analyzed.contains(&"catalog_services".to_owned()),
        "{analyzed:?}"
    );
    assert!(
        analyzed.contains(&"catalog_dependencies".to_owned()),
        "{analyzed:?}"
    );
    // Two teams changed two rows each: below the threshold.
    assert!(
        !analyzed.contains(&"catalog_teams".to_owned()),
        "{analyzed:?}"
    );
    // Nothing changed since: nothing to analyze.
    assert_eq!(
        analyze_stale::<CatalogProjection>(&app.pool).await.unwrap(),
        Vec::<String>::new()
    );
}
