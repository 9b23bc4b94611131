//! Reading the log: filtered reads for auditors, a resumable live tail.

use chrono::{Duration, Utc};
use paved_domain::Principal;
use paved_eventlog::codec::timestamp;
use paved_sdk::{Client, pb};
use paved_workers::projections::CatalogProjection;
use paved_workers::runtime;
use tonic::Code;

use crate::helpers::{TestApp, fixtures, spawn_app};

async fn collect(c: &Client, r: pb::ReadEventsRequest) -> Vec<pb::EventRecord> {
    let mut s = c.read_events(r).await.unwrap();
    let mut out = Vec::new();
    while let Some(rec) = s.message().await.unwrap() {
        out.push(rec);
    }
    out
}

async fn history(app: &TestApp) -> u64 {
    let c = &app.client;
    c.create_team(pb::CreateTeamRequest {
        members: vec!["alice".into()],
        ..fixtures::team("payments")
    })
    .await
    .unwrap();
    let bob = app
        .client_as(Principal::member(
            "bob",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    bob.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    bob.register_service(fixtures::service("fx", "payments"))
        .await
        .unwrap();
    bob.add_dependency(pb::AddDependencyRequest {
        service: "ledger".into(),
        depends_on: "fx".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .sequence
}

#[tokio::test]
async fn read_events_filters_server_side_and_carries_the_envelope() {
    let app = spawn_app().await;
    let last = history(&app).await;
    let c = &app.client;

    let all = collect(c, Default::default()).await;
    // TeamCreated + TeamMemberAdded in one commit, then 3 service commits.
    assert_eq!(all.len(), 5);
    assert_eq!(all.last().unwrap().sequence, last);
    assert_eq!((all[0].sequence, all[0].index, all[1].index), (1, 0, 1));
    let r = &all[2];
    assert_eq!(r.event_type, "ServiceRegistered");
    assert_eq!(r.principal, "bob");
    assert_eq!(
        (r.aggregate_type.as_str(), r.aggregate_id.as_str()),
        ("service", "ledger")
    );
    assert!(r.json.contains("\"serviceRegistered\""), "{}", r.json);
    assert!(r.occurred_at.is_some() && !r.command_id.is_empty());

    let ledger = collect(
        c,
        pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                aggregate_type: "service".into(),
                aggregate_id: "ledger".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let types: Vec<&str> = ledger.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["ServiceRegistered", "DependencyAdded"]);

    let by_admin = collect(
        c,
        pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                principal: "admin".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_admin.len(), 2);

    let registrations = collect(
        c,
        pb::ReadEventsRequest {
            from_sequence: 3,
            limit: 1,
            filter: Some(pb::EventFilter {
                event_types: vec!["ServiceRegistered".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(registrations.len(), 1);
    assert_eq!(registrations[0].aggregate_id, "fx");

    let before_anything = collect(
        c,
        pb::ReadEventsRequest {
            until: Some(timestamp(Utc::now() - Duration::hours(1))),
            ..Default::default()
        },
    )
    .await;
    assert!(before_anything.is_empty());
}

#[tokio::test]
async fn read_events_refuses_bad_ranges_and_filters() {
    let app = spawn_app().await;
    let last = history(&app).await;
    let c = &app.client;
    let code = |e: Result<paved_sdk::Records<pb::ReadEventsResponse>, paved_sdk::Error>| {
        e.err().map(|e| e.code())
    };
    let read = |r: pb::ReadEventsRequest| c.read_events(r);
    assert_eq!(
        code(
            read(pb::ReadEventsRequest {
                from_sequence: 4,
                to_sequence: 2,
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            read(pb::ReadEventsRequest {
                since: Some(timestamp(Utc::now() + Duration::days(1))),
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            read(pb::ReadEventsRequest {
                since: Some(timestamp(Utc::now())),
                until: Some(timestamp(Utc::now() - Duration::days(1))),
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            read(pb::ReadEventsRequest {
                from_sequence: last + 2,
                ..Default::default()
            })
            .await
        ),
        Some(Code::OutOfRange)
    );
    for filter in [
        pb::EventFilter {
            aggregate_type: "database".into(),
            ..Default::default()
        },
        pb::EventFilter {
            aggregate_id: "ledger".into(),
            ..Default::default()
        },
        pb::EventFilter {
            event_types: vec!["ServiceExploded".into()],
            ..Default::default()
        },
    ] {
        assert_eq!(
            code(
                read(pb::ReadEventsRequest {
                    filter: Some(filter),
                    ..Default::default()
                })
                .await
            ),
            Some(Code::InvalidArgument)
        );
    }
}

#[tokio::test]
async fn a_subscription_resumes_without_loss_or_duplicates() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let mut tail = c
        .subscribe(pb::SubscribeRequest {
            from_sequence: 1,
            filter: Some(pb::EventFilter {
                aggregate_type: "service".into(),
                ..Default::default()
            }),
            omit_json: false,
        })
        .await
        .unwrap();
    for i in 0..3 {
        c.register_service(fixtures::service(&format!("s{i}"), "payments"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = tail.message().await.unwrap().unwrap();
        seen.push((r.sequence, r.aggregate_id));
    }
    drop(tail); // disconnect after two
    for i in 3..5 {
        c.register_service(fixtures::service(&format!("s{i}"), "payments"))
            .await
            .unwrap();
    }
    let resume = seen.last().unwrap().0 + 1;
    let mut tail = c
        .subscribe(pb::SubscribeRequest {
            from_sequence: resume,
            filter: Some(pb::EventFilter {
                aggregate_type: "service".into(),
                ..Default::default()
            }),
            omit_json: false,
        })
        .await
        .unwrap();
    for _ in 0..3 {
        let r = tail.message().await.unwrap().unwrap();
        seen.push((r.sequence, r.aggregate_id));
    }
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    let past_end = c
        .subscribe(pb::SubscribeRequest {
            from_sequence: app.last_sequence().await + 5,
            filter: None,
            omit_json: false,
        })
        .await
        .unwrap_err();
    assert_eq!(past_end.code(), Code::OutOfRange);
}

#[tokio::test]
async fn replay_check_reports_drift_without_touching_the_live_tables() {
    let app = spawn_app().await;
    let last = history(&app).await;
    app.client.at(last).get_service("ledger").await.unwrap();
    let (_, checks) = runtime::check(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    // Teams, systems, services, dependencies, repositories, entities and
    // their relations.
    assert_eq!(checks.len(), 7, "one check per catalog table");
    assert!(checks.iter().all(|c| !c.drifted()), "{checks:?}");

    sqlx::query("UPDATE catalog_services SET description = 'edited by hand' WHERE name = 'fx'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, checks) = runtime::check(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let drifted: Vec<&str> = checks
        .iter()
        .filter(|c| c.drifted())
        .map(|c| c.table.as_str())
        .collect();
    assert_eq!(drifted, ["catalog_services"]);
    let still: String =
        sqlx::query_scalar("SELECT description FROM catalog_services WHERE name = 'fx'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        still, "edited by hand",
        "a check never changes the live tables"
    );
}

/// Consumers on the test's stream right now.
/// Readers' consumers (`paved-read-…`, what `EventLog::ordered` names them)
/// on the stream. The workers' own consumers are left out: they come and go
/// with their sessions, so a count of all consumers taken as a baseline
/// while they start up made this test fail now and then.
async fn reader_consumers(app: &TestApp) -> usize {
    use futures::TryStreamExt as _;
    let names: Vec<String> = app
        .log
        .stream()
        .consumer_names()
        .try_collect()
        .await
        .unwrap();
    names
        .iter()
        .filter(|n| n.starts_with("paved-read-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_that_come_and_go_leave_no_consumers_behind() {
    // NATS >= 2.15 allows 1,000 consumers per stream: every read must give
    // its consumer back when it ends, also when the client just goes away.
    let app = spawn_app().await;
    history(&app).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = app.client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                // A whole read, a read abandoned after one record, a live tail
                // dropped while it waits, and one whose deadline passes.
                let all = collect(&c, pb::ReadEventsRequest::default()).await;
                assert!(!all.is_empty());
                let mut s = c
                    .read_events(pb::ReadEventsRequest::default())
                    .await
                    .unwrap();
                s.message().await.unwrap();
                drop(s);
                let mut tail = c.subscribe(pb::SubscribeRequest::default()).await.unwrap();
                let waited =
                    tokio::time::timeout(std::time::Duration::from_millis(5), tail.message()).await;
                assert!(waited.is_err(), "nothing new arrives ({t}/{i})");
                drop(tail);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the readers' consumers to be gone",
        || async { (reader_consumers(&app).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_reader_that_decodes_the_protobuf_may_leave_the_json_out() {
    let app = spawn_app().await;
    history(&app).await;
    let c = &app.client;
    let with = collect(c, Default::default()).await;
    let without = collect(
        c,
        pb::ReadEventsRequest {
            omit_json: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        assert!(!a.json.is_empty());
        assert!(b.json.is_empty());
        // Everything else is the same record.
        assert_eq!(
            pb::EventRecord {
                json: String::new(),
                ..a.clone()
            },
            *b
        );
    }
    // The live tail takes the same choice.
    let mut tail = c
        .subscribe(pb::SubscribeRequest {
            from_sequence: 1,
            omit_json: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = tail.message().await.unwrap().unwrap();
    assert!(first.json.is_empty() && first.event.is_some());
}

#[tokio::test]
async fn live_subscriptions_end_with_unavailable_when_paved_shuts_down() {
    let mut app = spawn_app().await;
    let c = app.client.clone();
    c.create_team(fixtures::team("payments")).await.unwrap();
    let mut tail = c
        .subscribe(pb::SubscribeRequest {
            from_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(tail.message().await.unwrap().is_some());
    // A plugin's subscription too.
    c.publish_plugin(pb::PublishPluginRequest {
        plugin: "indexer".into(),
        manifest: Some(pb::PluginManifest {
            version: "1.0.0".into(),
            publisher: "payments".into(),
            scopes: vec!["events:read:catalog".into()],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let installed = c
        .install_plugin(pb::InstallPluginRequest {
            installation: "indexer".into(),
            plugin: "indexer".into(),
            version: "1.0.0".into(),
            scopes: vec!["events:read:catalog".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let plugin = Client::connect(app.url.clone(), &installed.token)
        .await
        .unwrap();
    let mut pulled = plugin.subscribe_plugin_events(true).await.unwrap();

    // Shutting down ends both at once with UNAVAILABLE (reconnect and
    // resume), instead of holding the drain until its timeout.
    app.stop().await.unwrap();
    // What was sent before comes first; then the stream's end.
    let tail_end = async {
        loop {
            match tail.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(s) => return Err(s),
            }
        }
    };
    let pulled_end = async {
        loop {
            match pulled.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(s) => return Err(s),
            }
        }
    };
    // A liveness bound (never reached unless the streams outlive Paved).
    let bound = std::time::Duration::from_secs(60);
    let statuses = [
        (
            "Subscribe",
            tokio::time::timeout(bound, tail_end)
                .await
                .expect("Subscribe ends"),
        ),
        (
            "SubscribePluginEvents",
            tokio::time::timeout(bound, pulled_end)
                .await
                .expect("SubscribePluginEvents ends"),
        ),
    ];
    for (what, end) in statuses {
        let status = end.expect_err(what);
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
        assert!(
            status.message().contains("shutting down"),
            "{what}: {status:?}"
        );
    }
}
