//! Faults an operator meets: PostgreSQL crashing under load, a standby worker
//! taking over after a database restart. Each test has a private PostgreSQL
//! (see [`crate::private`]); the machine's shared servers are never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use paved::Roles;
use paved_sdk::Client;
use paved_workers::projections::{AuditProjection, CatalogProjection};
use paved_workers::runtime;
use tokio::sync::Mutex;

use crate::helpers::{TestApp, eventually, fixtures, spawn_configured};
use crate::private::PrivatePostgres;

/// Registers services from `writers` concurrent clients until `stop`;
/// returns every registration the API acknowledged, with its sequence.
async fn register_until(
    client: Client,
    writers: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<(String, u64)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("svc-{w}-{i}");
                i += 1;
                // The SDK retries UNAVAILABLE with the same request id; a
                // call that still fails was not acknowledged, and need not be there.
                if let Ok(done) = client
                    .register_service(fixtures::service(&name, "crashers"))
                    .await
                {
                    acked.lock().await.push((name, done.sequence));
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner()
}

async fn crash_postgres_under_load(writers: usize, pause: Duration, crashes: &[u64]) {
    let pg = Arc::new(PrivatePostgres::start());
    let app: TestApp = spawn_configured(Roles::ALL, |s| {
        s.database_url = pg.url("paved");
    })
    .await;
    app.client
        .create_team(fixtures::team("crashers"))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(register_until(
        app.client.clone(),
        writers,
        pause,
        stop.clone(),
    ));
    for &after_ms in crashes {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            pg.crash();
            std::thread::sleep(Duration::from_millis(200));
            pg.start_again();
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    assert!(
        acked.len() > 20,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    let last = app.last_sequence().await;

    // Every acknowledged registration is readable at its own sequence.
    let reader = app.client.at(last);
    eventually(
        Duration::from_secs(60),
        "the catalog to catch up",
        || async { reader.get_service(&acked.last().unwrap().0).await.ok() },
    )
    .await;
    let listed = app
        .client
        .at(last)
        .list_all_services(Default::default())
        .await
        .unwrap();
    let mut missing: Vec<&str> = acked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !listed.iter().any(|s| s.name == *n))
        .collect();
    missing.truncate(10);
    assert!(
        missing.is_empty(),
        "acknowledged but missing from the read model: {missing:?}"
    );
    assert_eq!(listed.len(), acked.len(), "nothing extra, nothing twice");

    // The live read models equal a fresh replay of the log.
    let (_, checks) = runtime::check(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let drifted: Vec<_> = checks.iter().filter(|c| c.drifted()).collect();
    assert!(drifted.is_empty(), "catalog drift: {drifted:?}");
    let (_, checks) = runtime::check(
        &[AuditProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let drifted: Vec<_> = checks.iter().filter(|c| c.drifted()).collect();
    assert!(drifted.is_empty(), "audit index drift: {drifted:?}");
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashes_under_heavy_load_lose_no_acknowledged_command() {
    crash_postgres_under_load(32, Duration::ZERO, &[700, 450, 900, 300]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashes_under_light_load_lose_no_acknowledged_command() {
    crash_postgres_under_load(2, Duration::from_millis(5), &[400, 800, 250]).await;
}

/// Waits until the catalog has applied the whole log, then checks that it
/// equals a fresh replay and holds every acknowledged registration.
async fn assert_catalog_complete(app: &TestApp, acked: &[(String, u64)]) {
    let last = app.last_sequence().await;
    eventually(
        Duration::from_secs(60),
        "the catalog to catch up",
        || async {
            let at: i64 = sqlx::query_scalar(
                "SELECT last_sequence FROM projection_checkpoints WHERE projection = 'catalog'",
            )
            .fetch_one(&app.pool)
            .await
            .ok()?;
            (at as u64 >= last).then_some(())
        },
    )
    .await;
    let listed = app
        .client
        .at(last)
        .list_all_services(Default::default())
        .await
        .unwrap();
    let missing: Vec<&str> = acked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !listed.iter().any(|s| s.name == *n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    let (_, checks) = runtime::check(
        &[CatalogProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let drifted: Vec<_> = checks.iter().filter(|c| c.drifted()).collect();
    assert!(drifted.is_empty(), "catalog drift: {drifted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_worker_takes_over_after_a_postgres_restart_and_the_old_one_stops_writing() {
    let pg = Arc::new(PrivatePostgres::start());
    let app = spawn_configured(Roles::ALL, |s| s.database_url = pg.url("paved")).await;
    app.client
        .create_team(fixtures::team("crashers"))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(register_until(
        app.client.clone(),
        8,
        Duration::from_millis(2),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The restart drops the active worker's advisory lock...
    let restart = pg.clone();
    tokio::task::spawn_blocking(move || {
        restart.crash();
        restart.start_again();
    })
    .await
    .unwrap();
    // ...and a standby started now takes it, while the first keeps running.
    let standby = paved::Application::build(app.settings.clone(), Roles::WORKERS)
        .await
        .unwrap();
    let standby_stop = tokio_util::sync::CancellationToken::new();
    let standby_task = tokio::spawn(standby.run_until_stopped(standby_stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    assert!(
        acked.len() > 20,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    assert_catalog_complete(&app, &acked).await;
    // Both took the projection at least once each: the epoch moved on.
    let epoch: i64 =
        sqlx::query_scalar("SELECT epoch FROM projection_checkpoints WHERE projection = 'catalog'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(epoch >= 2, "epoch {epoch}");
    standby_stop.cancel();
    standby_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_database_that_went_back_is_noticed_and_re_read_from_its_checkpoint() {
    // What a failover to a replica that missed the last commits, or a restore,
    // looks like to a running worker: the rows and the checkpoint are older
    // than what it committed.
    let app = crate::helpers::spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("crashers")).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        let name = format!("early-{i}");
        let done = c
            .register_service(fixtures::service(&name, "crashers"))
            .await
            .unwrap();
        acked.push((name, done.sequence));
    }
    c.at(acked.last().unwrap().1)
        .get_service("early-9")
        .await
        .unwrap();
    let back_to = acked[4].1;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN;
         DELETE FROM catalog_services WHERE last_sequence > {back_to};
         UPDATE projection_checkpoints SET last_sequence = {back_to} WHERE projection = 'catalog';
         COMMIT;"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    for i in 0..5 {
        let name = format!("late-{i}");
        let done = c
            .register_service(fixtures::service(&name, "crashers"))
            .await
            .unwrap();
        acked.push((name, done.sequence));
    }
    assert_catalog_complete(&app, &acked).await;
}

#[tokio::test]
async fn a_lease_knows_when_a_postgres_restart_took_its_lock() {
    use paved_workers::lease::Lease;
    let pg = Arc::new(PrivatePostgres::start());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&pg.url("postgres"))
        .await
        .unwrap();
    let none = tokio_util::sync::CancellationToken::new();
    let mut first = Lease::acquire(&pool, "paved.test", &none).await.unwrap();
    first.check().await.unwrap();
    // A second worker stands by while the first holds it.
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    assert!(
        Lease::acquire(&pool, "paved.test", &stopped)
            .await
            .is_none()
    );
    let restart = pg.clone();
    tokio::task::spawn_blocking(move || {
        restart.crash();
        restart.start_again();
    })
    .await
    .unwrap();
    // The standby can take it now, and the first one finds out.
    let mut second = Lease::acquire(&pool, "paved.test", &none).await.unwrap();
    second.check().await.unwrap();
    assert!(first.check().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_is_resource_exhausted_and_health_follows_nats() {
    use crate::private::PrivateNats;
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut nats = PrivateNats::start("max_file_store: 1MB");
    let url = nats.url();
    let app = spawn_configured(Roles::ALL, |s| s.nats_url = url).await;
    let c = &app.client;
    c.create_team(fixtures::team("crashers")).await.unwrap();
    // Fill the server's store: the write fails with RESOURCE_EXHAUSTED, saying why.
    let mut full = None;
    for i in 0..2000 {
        let mut r = fixtures::service(&format!("svc-{i}"), "crashers");
        r.spec.as_mut().unwrap().description = "x".repeat(1900);
        match c.register_service(r).await {
            Ok(_) => {}
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("the store filled up");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.to_string().contains("storage is full"), "{e}");

    // Health says SERVING while NATS answers, NOT_SERVING while it does not.
    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status =
        |mut h: tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
         service: &'static str| async move {
            h.check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status())
            .ok()
        };
    assert_eq!(
        status(health.clone(), "").await,
        Some(ServingStatus::Serving)
    );
    nats.kill();
    eventually(Duration::from_secs(20), "NOT_SERVING without NATS", || {
        let h = health.clone();
        async move {
            (status(h.clone(), "").await == Some(ServingStatus::NotServing)
                && status(h, "paved.v1.CatalogService").await == Some(ServingStatus::NotServing))
            .then_some(())
        }
    })
    .await;
    nats.start_again();
    eventually(Duration::from_secs(30), "SERVING again", || {
        let h = health.clone();
        async move { (status(h, "").await == Some(ServingStatus::Serving)).then_some(()) }
    })
    .await;
    let _ = &mut health;
}

/// A running Paved (one role) on the test's settings, stopped by abort (a crash).
struct Replica {
    app_url: Option<String>,
    statuses: Vec<tokio::sync::watch::Receiver<paved_workers::ProjectionStatus>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn replica(settings: &paved::Settings, roles: Roles) -> (Replica, Option<String>) {
    // A new cluster elects its JetStream leader and places the R3 stream
    // within seconds: until then building fails, and is tried again.
    let app = eventually(
        Duration::from_secs(60),
        "Paved built on the cluster",
        || async {
            paved::Application::build(settings.clone(), roles)
                .await
                .ok()
        },
    )
    .await;
    let token = app.admin_token().map(str::to_owned);
    let app_url = roles
        .api
        .then(|| format!("http://127.0.0.1:{}", app.port()));
    let statuses = app.projection_statuses();
    let task = tokio::spawn(app.run_until_stopped(tokio_util::sync::CancellationToken::new()));
    (
        Replica {
            app_url,
            statuses,
            task,
        },
        token,
    )
}

impl Replica {
    fn runs_catalog(&self) -> bool {
        self.statuses.iter().any(|s| {
            s.borrow().name == "catalog" && s.borrow().health == paved_workers::Health::Running
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_loses_its_stream_leader_and_a_worker_and_nothing_else() {
    use crate::private::PrivateCluster;
    let mut cluster = PrivateCluster::start();
    let (id, mut settings) = crate::helpers::isolated_settings();
    settings.nats_url = cluster.urls();
    settings.stream_replicas = 3;
    settings.metrics_listen = String::new();
    settings.webhook_listen = String::new();
    // Two API replicas, two workers (one active, one standing by).
    let (api1, token) = replica(&settings, Roles::API).await;
    let token = token.expect("the first start prints an admin token");
    let (api2, _) = replica(&settings, Roles::API).await;
    let (worker1, _) = replica(&settings, Roles::WORKERS).await;
    let (worker2, _) = replica(&settings, Roles::WORKERS).await;
    let c1 = Client::connect(api1.app_url.clone().unwrap(), &token)
        .await
        .unwrap();
    let c2 = Client::connect(api2.app_url.clone().unwrap(), &token)
        .await
        .unwrap();
    c1.create_team(fixtures::team("crashers")).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load1 = tokio::spawn(register_until(
        c1.clone(),
        4,
        Duration::from_millis(5),
        stop.clone(),
    ));
    let load2 = tokio::spawn(register_until(
        c2.clone(),
        4,
        Duration::from_millis(5),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Kill the stream's leader (kill -9); the others elect a new one.
    let urls: Vec<String> = cluster.urls().split(',').map(str::to_owned).collect();
    let nats = async_nats::connect(urls.as_slice()).await.unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    let leader = eventually(Duration::from_secs(10), "the stream's leader", || {
        let js = js.clone();
        let name = settings.stream.clone();
        async move {
            let mut s = js.get_stream(&name).await.ok()?;
            s.info().await.ok()?.cluster.clone()?.leader
        }
    })
    .await;
    let killed_at = std::time::Instant::now();
    cluster.node(&leader).kill();
    // The first command acknowledged after the kill: the time to recover.
    let probe = c2.clone();
    let recovered = eventually(
        Duration::from_secs(60),
        "a command after the leader died",
        || {
            let probe = probe.clone();
            async move {
                probe
                    .register_service(fixtures::service(
                        &format!("probe-{}", uuid::Uuid::new_v4().simple()),
                        "crashers",
                    ))
                    .await
                    .ok()
            }
        },
    )
    .await;
    let recovery = killed_at.elapsed();
    eprintln!(
        "cluster: stream leader {leader} killed; a command was acknowledged again after {recovery:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Kill the worker running the catalog (as kill -9 would: no drain).
    let (dead, standby) = if worker1.runs_catalog() {
        (worker1, worker2)
    } else {
        (worker2, worker1)
    };
    dead.task.abort();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = load1.await.unwrap();
    acked.extend(load2.await.unwrap());
    assert!(
        acked.len() > 50,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    let _ = recovered;

    // The standby took over; every acknowledged registration is there once.
    let last = eventually(
        Duration::from_secs(30),
        "the stream's last sequence",
        || {
            let js = js.clone();
            let name = settings.stream.clone();
            async move {
                let mut s = js.get_stream(&name).await.ok()?;
                Some(s.info().await.ok()?.state.last_sequence)
            }
        },
    )
    .await;
    let reader = c1.at(last);
    // On a degraded cluster (two of three) the standby's first JetStream
    // requests may time out before its session opens: as slow as the
    // replay check below when the whole suite shares the machine.
    let listed = eventually(
        Duration::from_secs(180),
        "the catalog to catch up",
        || async { reader.list_all_services(Default::default()).await.ok() },
    )
    .await;
    assert!(standby.runs_catalog(), "the standby runs the catalog now");
    let names: std::collections::HashSet<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), listed.len(), "nothing twice");
    let missing: Vec<&str> = acked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !names.contains(n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");

    // The read model equals a replay, and the log verifies.
    let pool = sqlx::PgPool::connect(&settings.database_url).await.unwrap();
    let log = paved_eventlog::EventLog::open_existing(nats, settings.log_config())
        .await
        .unwrap();
    // A degraded cluster (two of three) may time out a request now and
    // then while it settles: an operator would run these again.
    // (Slow when the whole suite shares the machine: the reason of the last
    // failed try is what a timeout says.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let checks = loop {
        match runtime::check(
            &[CatalogProjection],
            &pool,
            &log,
            &Default::default(),
            |_| {},
        )
        .await
        {
            Ok((_, c)) => break c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("replay check, trying again: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the replay check kept failing: {e}"),
        }
    };
    assert!(checks.iter().all(|c| !c.drifted()), "{checks:?}");
    let key = paved_workers::checkpoint::signing_key(&pool, None)
        .await
        .unwrap();
    let mut keys = paved_eventlog::audit::TrustedKeys::default();
    keys.add(key.verifying_key());
    // As the replay check above: a degraded cluster under a loaded machine
    // may time out reads for a while.
    let report = eventually(Duration::from_secs(180), "audit verify", || {
        let (log, keys) = (log.clone(), keys.clone());
        async move {
            paved_eventlog::audit::verify_log(&log, keys, 1, |_, _| {})
                .await
                .ok()
        }
    })
    .await;
    assert!(report.ok(), "{report:?}");

    for r in [api1, api2, standby] {
        r.task.abort();
    }
    pool.close().await;
    crate::helpers::remove_database(&format!("paved_test_{id}")).await;
}
