//! `paved bench`: Paved's speed, measured next to the raw limits of the
//! machine in the same run (plain JetStream publish, an empty tonic call).
//!
//! It starts its own Paved in-process (API on port 0, its own stream and
//! database, both removed afterwards) and drives it through the SDK. The
//! catalog worker is driven by the bench itself, so the backlog phase can
//! measure catch-up. Figures vary between runs on shared machines: compare
//! the figures of one run with each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use paved_domain::catalog::{
    Lifecycle, ServiceEvent, ServiceSpec, ServiceType, SpecField, TeamEvent, TeamProfile,
};
use paved_domain::{AggregateKind, Name};
use paved_eventlog::codec::{self, Commit};
use paved_eventlog::readmodel::{CATALOG, CHECKPOINT_CHANNEL};
use paved_sdk::{Client, pb};
use paved_workers::ProjectionWorker;
use paved_workers::projections::CatalogProjection;
use paved_workers::runtime;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

use crate::cli::output::{self, Output};
use crate::settings::Settings;
use crate::startup::{Application, Roles};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Commands in the throughput phase.
    #[arg(long, default_value_t = 30_000)]
    commands: usize,
    /// Target rate of the projection-lag phase (commands/s).
    #[arg(long, default_value_t = 5_000)]
    lag_rate: u64,
    /// Length of the projection-lag phase (s).
    #[arg(long, default_value_t = 5)]
    lag_seconds: u64,
    /// get-service requests in the read phase.
    #[arg(long, default_value_t = 50_000)]
    reads: usize,
    /// Backstage components in the import phase.
    #[arg(long, default_value_t = 5_000)]
    import_components: usize,
    /// Events in the log for the rebuild phase (0 skips it). Events beyond
    /// what the other phases wrote are published straight to JetStream as
    /// valid catalog commits.
    #[arg(long, default_value_t = 1_000_000)]
    rebuild_events: u64,
    /// Delivery events (deployments, changes, incidents over two years,
    /// 40 teams) for the DORA phase (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    dora_events: u64,
    /// After the one-worker catch-up of the DORA phase, catch the delivery
    /// projection up again split this many ways (one worker per share;
    /// 1 skips it).
    #[arg(long, default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(paved_eventlog::readmodel::MAX_PARTITIONS)))]
    delivery_shares: u32,
    /// Namespace requests planned and committed to a Git repository by the
    /// GitOps writer, next to a raw `git commit` + `git push` loop (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    provision_requests: usize,
    /// Golden-path tasks (`paved create` of the rust-service template: a
    /// repository, a catalog entry, a namespace and an Argo CD application
    /// each) run to their last step, next to a raw loop making the same
    /// repositories with `git` (0 skips it).
    #[arg(long, default_value_t = 100)]
    template_creates: usize,
    /// Plugin installations posting to one local webhook receiver in the
    /// plugin phase, next to plain unsigned posts to it (0 skips it).
    #[arg(long, default_value_t = 100)]
    plugin_installations: usize,
    /// Services registered in the plugin phase: each installation is sent
    /// each one, and one pulling plugin subscribes to them.
    #[arg(long, default_value_t = 500)]
    plugin_events: usize,
    /// Where the shipped templates are (for the golden-path phase).
    #[arg(long, env = "PAVED_TEMPLATES", default_value = "templates")]
    templates: std::path::PathBuf,
    /// Grow the log to 1,000,000 and then to this many events (0 skips it),
    /// measuring at each size what grows with the log: raw ordered consume,
    /// the catalog rebuild (and the memory it holds), ReadEvents, checkpoint
    /// and `audit verify`, and the disk the stream and the database take;
    /// then how each cost per million events grew. Needs about 300 bytes of
    /// stream and 100 of database a catalog event; 10,000,000 takes some
    /// 10 minutes here. Run it with `--rebuild-events 0`.
    #[arg(long, default_value_t = 0)]
    scale: u64,
    /// Keep the bench's stream and database afterwards.
    #[arg(long)]
    keep: bool,
    /// Output format: table (default), json or jsonl.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    settings: Settings,
}

/// Throughput and latency of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figure {
    pub phase: String,
    pub operations: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub target: String,
}

fn figure(
    phase: &str,
    ops: u64,
    elapsed: Duration,
    mut latencies: Vec<Duration>,
    target: &str,
) -> Figure {
    latencies.sort();
    let pct = |p: f64| {
        (!latencies.is_empty()).then(|| {
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1000.0
        })
    };
    let seconds = elapsed.as_secs_f64();
    Figure {
        phase: phase.to_owned(),
        operations: ops,
        seconds,
        per_second: ops as f64 / seconds.max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        target: target.to_owned(),
    }
}

/// Runs `total` operations over `clients` concurrent tasks; returns the wall
/// time and each operation's latency.
async fn concurrent<F, Fut>(
    clients: usize,
    total: usize,
    op: F,
) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < total {
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
                i += clients;
            }
            anyhow::Ok(lat)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok((started.elapsed(), all))
}

struct Bench {
    app_url: String,
    client: Client,
    pool: PgPool,
    log: paved_eventlog::EventLog,
    worker_stop: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// The hash chains of what the log filler wrote, so a top-up continues them.
    filled: Chains,
}

impl Bench {
    fn start_worker(&mut self) {
        let worker = ProjectionWorker::new(CatalogProjection, self.pool.clone(), self.log.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = worker.run(token).await {
                tracing::error!(error = %e, "bench worker failed");
            }
        });
        self.worker_stop = Some((stop, handle));
    }

    async fn stop_worker(&mut self) {
        if let Some((stop, handle)) = self.worker_stop.take() {
            stop.cancel();
            handle.await.ok();
        }
    }

    async fn checkpoint(&self) -> anyhow::Result<u64> {
        Ok(paved_eventlog::checkpoints::get(&self.pool, CATALOG)
            .await?
            .unwrap_or(0))
    }

    /// Waits until the catalog projection has applied everything up to `seq`.
    async fn caught_up(&self, seq: u64) -> anyhow::Result<()> {
        self.client.at(seq).get_team("bench").await?;
        Ok(())
    }
}

pub async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut settings = a.settings.clone();
    settings.listen = "127.0.0.1:0".parse()?;
    settings.stream = format!("BENCH_{}", id.to_uppercase());
    settings.subject_prefix = format!("bench{id}");
    let base = settings
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .context("database URL")?;
    settings.database_url = format!("{base}/paved_bench_{id}");
    settings.read_wait_ms = 60_000;
    settings.metrics_listen = String::new();
    settings.webhook_listen = String::new();
    settings.dev = true;
    eprintln!(
        "bench: stream {} database paved_bench_{id}",
        settings.stream
    );

    let app = Application::build(settings.clone(), Roles::API).await?;
    let token = app.admin_token().context("admin token")?.to_owned();
    let url = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let log = app.log().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = Client::connect(url.clone(), &token).await?;
    let mut b = Bench {
        app_url: url,
        client,
        pool,
        log,
        worker_stop: None,
        filled: Chains::new(),
    };
    let result = run_phases(&mut b, &a).await;
    b.stop_worker().await;
    shutdown.cancel();
    server.await.ok();
    if !a.keep {
        cleanup(&settings, &id).await;
    }
    let figures = result?;
    match a.output {
        Output::Json | Output::Jsonl => output::json(&figures),
        Output::Table => {
            let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
            output::table(
                &[
                    "PHASE",
                    "OPS",
                    "SECONDS",
                    "PER SECOND",
                    "P50 MS",
                    "P99 MS",
                    "TARGET",
                ],
                &figures
                    .iter()
                    .map(|f| {
                        vec![
                            f.phase.clone(),
                            f.operations.to_string(),
                            format!("{:.2}", f.seconds),
                            format!("{:.0}", f.per_second),
                            ms(f.p50_ms),
                            ms(f.p99_ms),
                            f.target.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            Ok(())
        }
    }
}

async fn cleanup(settings: &Settings, id: &str) {
    if let Ok(nats) = async_nats::connect(&settings.nats_url).await {
        async_nats::jetstream::new(nats)
            .delete_stream(&settings.stream)
            .await
            .ok();
    }
    let admin_url = settings
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| format!("{b}/postgres"))
        .unwrap_or_default();
    if let Ok(admin) = PgPool::connect(&admin_url).await {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS paved_bench_{id} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .ok();
    }
}

async fn run_phases(b: &mut Bench, a: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let mut out = Vec::new();
    let clients = a.clients;

    // Reference 1: plain JetStream publish, ack awaited, same concurrency,
    // into a stream of its own (same storage) so Paved's log stays clean.
    eprintln!("phase: raw JetStream publish");
    let js = b.log.jetstream().clone();
    let raw_stream = format!("{}_RAW", b.log.config().stream);
    let prefix = format!("{}raw", b.log.config().subject_prefix);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: raw_stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let n = a.commands;
    let (t, lat) = concurrent(clients, n, move |i| {
        let js = js.clone();
        let subject = format!("{prefix}.s{}", i % 10_000);
        async move {
            js.publish(subject, Bytes::from_static(&[0u8; 200]))
                .await?
                .await?;
            Ok(())
        }
    })
    .await?;
    out.push(figure(
        "raw: JetStream publish (ack awaited)",
        n as u64,
        t,
        lat,
        "reference",
    ));
    b.log.jetstream().delete_stream(&raw_stream).await?;

    // Reference 2: an empty tonic round trip (grpc.health.v1 Check).
    eprintln!("phase: raw tonic round trip");
    let channel = tonic::transport::Endpoint::from_shared(b.app_url.clone())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let (t, lat) = concurrent(clients, n, move |_| {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest::default())
                .await?;
            Ok(())
        }
    })
    .await?;
    out.push(figure(
        "raw: empty tonic call",
        n as u64,
        t,
        lat,
        "reference",
    ));

    // Commands through the SDK (worker stopped: the API alone).
    eprintln!("phase: commands");
    let setup = b.client.create_team(pb::CreateTeamRequest {
        name: "bench".into(),
        ..Default::default()
    });
    let seq0 = setup.await?.sequence;
    let c = b.client.clone();
    let (t, lat) = concurrent(clients, n, move |i| {
        let c = c.clone();
        async move {
            c.register_service(service_request(&format!("svc-{i}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    out.push(figure(
        "commands: RegisterService via SDK",
        n as u64,
        t,
        lat,
        ">= 10000/s, p99 <= 10 ms",
    ));
    let backlog_end = b.log.last_sequence().await?;

    // Catch-up: the worker starts with the whole backlog waiting.
    eprintln!("phase: catch-up");
    let before = b.checkpoint().await?;
    let started = Instant::now();
    b.start_worker();
    b.caught_up(backlog_end).await?;
    let applied = backlog_end.saturating_sub(before.max(seq0.saturating_sub(1)));
    out.push(figure(
        "catalog projection catch-up",
        applied,
        started.elapsed(),
        Vec::new(),
        ">= 30000 events/s",
    ));

    // Projection lag at a steady rate: ack → checkpoint NOTIFY.
    eprintln!("phase: projection lag at {}/s", a.lag_rate);
    out.push(lag_phase(b, a).await?);

    // Reads: get-service with the same concurrency.
    eprintln!("phase: get-service");
    let c = b.client.clone();
    let services = n.max(1);
    let (t, lat) = concurrent(clients, a.reads, move |i| {
        let c = c.clone();
        async move {
            c.get_service(&format!("svc-{}", (i * 7919) % services))
                .await?;
            Ok(())
        }
    })
    .await?;
    out.push(figure(
        "get-service via SDK",
        a.reads as u64,
        t,
        lat,
        ">= 15000/s, p99 <= 10 ms",
    ));
    // The same reads over 100 services (a portal's front page, callers
    // polling their own): answered from the cache while the catalog stands.
    eprintln!("phase: get-service of 100 hot services");
    let c = b.client.clone();
    let hot = services.min(100);
    let (t, lat) = concurrent(clients, a.reads, move |i| {
        let c = c.clone();
        async move {
            c.get_service(&format!("svc-{}", (i * 7919) % hot)).await?;
            Ok(())
        }
    })
    .await?;
    out.push(figure(
        "get-service via SDK, 100 hot services (no writes meanwhile)",
        a.reads as u64,
        t,
        lat,
        "reference (the cache; compare the empty tonic call)",
    ));

    // Backstage import until every component is visible.
    eprintln!(
        "phase: Backstage import of {} components",
        a.import_components
    );
    let yaml = backstage_yaml(a.import_components);
    let started = Instant::now();
    // Streamed, as `paved catalog import` sends it (any size).
    let r = b
        .client
        .import_backstage_stream("", &yaml, false, None)
        .await?;
    b.caught_up(r.sequence).await?;
    out.push(figure(
        "Backstage import until visible",
        r.entities as u64,
        started.elapsed(),
        Vec::new(),
        "5000 components <= 2 s",
    ));
    // Entities of other kinds beside them, then the whole catalog out.
    let (apis, users) = (
        (a.import_components / 5).max(1),
        (a.import_components / 10).max(1),
    );
    eprintln!("phase: Backstage import of {apis} APIs and {users} users");
    let started = Instant::now();
    let r = b
        .client
        .import_backstage_stream("", &entities_yaml(apis, users), false, None)
        .await?;
    b.caught_up(r.sequence).await?;
    out.push(figure(
        "Backstage import of APIs and users (joining a team) until visible",
        r.entities as u64,
        started.elapsed(),
        Vec::new(),
        "with the 5000 components: 1000 APIs + 500 users <= 2 s in all",
    ));
    eprintln!("phase: Backstage export of the catalog");
    let started = Instant::now();
    // Streamed, as `paved catalog export` reads it.
    let mut stream = b
        .client
        .at(r.sequence)
        .export_backstage_stream(false)
        .await?;
    let (mut entities, mut bytes) = (0u64, 0usize);
    while let Some(chunk) = stream.message().await? {
        entities += u64::from(chunk.entities);
        bytes += chunk.yaml.len();
    }
    out.push(figure(
        &format!(
            "Backstage export of the catalog, streamed ({entities} entities, {:.1} MiB)",
            bytes as f64 / 1048576.0
        ),
        entities,
        started.elapsed(),
        Vec::new(),
        "50,000 entities <= 5 s",
    ));
    out.push(in_mib(
        format!(
            "resident memory (API + worker + bench client, {} services)",
            n + a.import_components
        ),
        rss_mib(),
        "<= 150 MiB with 5000 services",
    ));

    if a.rebuild_events > 0 {
        eprintln!("phase: rebuild of {} events", a.rebuild_events);
        b.stop_worker().await;
        fill_log(b, a.rebuild_events).await?;
        let total = b.log.last_sequence().await?;
        let rss_before = rss_mib();
        let r = rebuild_catalog(b).await?;
        out.push(figure(
            &format!("rebuild of the catalog ({total} messages in the log)"),
            r.messages,
            r.elapsed,
            Vec::new(),
            "1,000,000 events <= 40 s; >= 0.9 x the raw COPY below",
        ));
        out.push(in_mib(
            format!("resident memory during the rebuild (before it: {rss_before} MiB)"),
            r.rss_peak,
            "<= 300 MiB",
        ));
        out.extend(raw_postgres(&b.pool, r.messages).await?);
    }

    // Reading the whole log: raw ordered consumer vs ReadEvents through the SDK.
    eprintln!("phase: read the log");
    let total = b.log.last_sequence().await?;
    let (n, elapsed) = raw_consume(b).await?;
    out.push(figure(
        "raw: JetStream ordered consume of the log",
        n,
        elapsed,
        Vec::new(),
        "reference",
    ));
    let (events, elapsed) = read_all(b, false).await?;
    out.push(figure(
        &format!("ReadEvents of the whole log ({total} messages)"),
        events,
        elapsed,
        Vec::new(),
        ">= 80000 events/s",
    ));
    // The same without the JSON rendering (a client decoding the protobuf).
    let (events, elapsed) = read_all(b, true).await?;
    out.push(figure(
        &format!("ReadEvents of the whole log, omit_json ({total} messages)"),
        events,
        elapsed,
        Vec::new(),
        ">= 0.7 x the raw consume",
    ));

    // The catalog as of now, replayed in memory from the whole log.
    let started = Instant::now();
    let (catalog, events) =
        crate::cli::audit::catalog_at(&b.client, chrono::Utc::now(), String::new(), String::new())
            .await?;
    anyhow::ensure!(!catalog.services.is_empty(), "audit at found no services");
    out.push(figure(
        &format!(
            "audit at NOW catalog: the log replayed in memory ({events} events, {} services)",
            catalog.services.len()
        ),
        events,
        started.elapsed(),
        Vec::new(),
        "1,000,000 events <= 20 s",
    ));

    if a.dora_events > 0 {
        out.extend(dora_phase(b, a).await?);
    }

    if a.provision_requests > 0 {
        out.extend(provisioning_phase(b, a.provision_requests).await?);
    }

    if a.template_creates > 0 {
        out.extend(templates_phase(b, a.template_creates, &a.templates).await?);
    }

    if a.plugin_installations > 0 && a.plugin_events > 0 {
        out.extend(plugins_phase(b, a.plugin_installations, a.plugin_events).await?);
    }

    // Tamper evidence: sign checkpoints over the whole log, then verify it.
    eprintln!("phase: checkpoint and verify the log");
    let v = checkpoint_and_verify(b).await?;
    out.push(figure(
        "checkpoint: Merkle root + Ed25519 signature over the log",
        v.checkpointed,
        v.checkpointing,
        Vec::new(),
        "reference (messages/s)",
    ));
    out.push(figure(
        &format!("audit verify of the whole log ({} messages)", v.verified),
        v.verified,
        v.verifying,
        Vec::new(),
        ">= 80000 events/s",
    ));
    if a.scale > 0 {
        out.extend(scale_phase(b, a.scale).await?);
    }
    Ok(out)
}

fn service_request(name: &str) -> pb::RegisterServiceRequest {
    pb::RegisterServiceRequest {
        name: name.to_owned(),
        owner: "bench".into(),
        spec: Some(pb::ServiceSpec {
            r#type: pb::ServiceType::Service.into(),
            lifecycle: pb::Lifecycle::Production.into(),
            description: "bench".into(),
            tags: vec!["bench".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn lag_phase(b: &Bench, a: &BenchArgs) -> anyhow::Result<Figure> {
    let notified: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut listener = sqlx::postgres::PgListener::connect_with(&b.pool).await?;
    listener.listen(CHECKPOINT_CHANNEL).await?;
    let stop = CancellationToken::new();
    let listen_task = {
        let notified = notified.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    n = listener.recv() => match n {
                        Ok(n) => {
                            if let Some((_, seq)) = n.payload().rsplit_once(':')
                                && let Ok(seq) = seq.parse::<u64>()
                            {
                                notified.lock().unwrap_or_else(|p| p.into_inner()).push((seq, Instant::now()));
                            }
                        }
                        Err(_) => return,
                    }
                }
            }
        })
    };
    let acked: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let total = (a.lag_rate * a.lag_seconds) as usize;
    let per_client = Duration::from_secs_f64(a.clients as f64 / a.lag_rate as f64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let stride = a.clients;
    // The services the throughput phase registered; updates go to the first 1000.
    let hot = a.commands.clamp(1, 1000);
    for client in 0..a.clients {
        let c = b.client.clone();
        let acked = acked.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(per_client);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = client;
            while i < total {
                tick.tick().await;
                let r = c
                    .update_service(pb::UpdateServiceRequest {
                        name: format!("svc-{}", i % hot),
                        spec: Some(pb::ServiceSpec {
                            description: format!("lag {i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(paved_proto::wkt::FieldMask {
                            paths: vec!["description".into()],
                        }),
                        ..Default::default()
                    })
                    .await?;
                acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((r.sequence, Instant::now()));
                i += stride;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let elapsed = started.elapsed();
    let last = acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(s, _)| *s)
        .max()
        .unwrap_or(0);
    b.caught_up(last).await?;
    // Give the listener the last notification.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && notified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|(s, _)| *s < last)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    listen_task.await.ok();
    let notes: BTreeMap<u64, Instant> = notified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    let acks = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let lags: Vec<Duration> = acks
        .iter()
        .filter_map(|(seq, at)| {
            notes
                .range(*seq..)
                .next()
                .map(|(_, seen)| seen.saturating_duration_since(*at))
        })
        .collect();
    let mut f = figure(
        &format!("projection lag (ack → applied) at {}/s", a.lag_rate),
        acks.len() as u64,
        elapsed,
        lags,
        "p99 <= 50 ms at 5000/s",
    );
    f.phase = format!(
        "{} (achieved {:.0}/s)",
        f.phase,
        acks.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(f)
}

/// APIs the imported components provide, and users of their team.
fn entities_yaml(apis: usize, users: usize) -> String {
    let mut y = String::new();
    for i in 0..apis {
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: Api.{i}\nspec:\n  type: openapi\n  lifecycle: production\n  owner: group:imported\n  system: billing\n  definition: \"openapi: 3.0.0\"\n"
        ));
    }
    for i in 0..users {
        // A team holds at most 1,000 members: the others name groups the
        // catalog does not have (relations only, marked missing).
        let group = if i < 1_000 {
            "imported".to_owned()
        } else {
            format!("group:default/elsewhere-{}", i % 10)
        };
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n  name: user.{i}\nspec:\n  profile:\n    email: user.{i}@example.com\n  memberOf: [{group}]\n"
        ));
    }
    y
}

fn backstage_yaml(components: usize) -> String {
    let mut y = String::from(
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: imported\nspec:\n  type: team\n  children: []\n",
    );
    for i in 0..components {
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: imp-{i}\n  description: Imported component {i}\n  tags: [java]\nspec:\n  type: service\n  lifecycle: production\n  owner: imported\n{}",
            if i > 0 { format!("  dependsOn: [component:imp-{}]\n", i / 2) } else { String::new() }
        ));
    }
    y
}

/// A figure whose value is in MiB (in the operations column).
fn in_mib(phase: String, mib: u64, target: &str) -> Figure {
    Figure {
        phase,
        operations: mib,
        target: format!("{target} (value in MiB)"),
        ..Default::default()
    }
}

/// Resident set size of this process in MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// The raw limits of writing `rows` rows shaped like the catalog
/// projection's (`catalog_services`, with its indexes, logged like it) in
/// this run: `COPY … FROM STDIN`, and `INSERT … SELECT FROM UNNEST` of 1,000
/// rows a statement (what the projections send).
async fn raw_postgres(pool: &PgPool, rows: u64) -> anyhow::Result<Vec<Figure>> {
    const COLUMNS: &str = "name, owner, type, lifecycle, description, repository_url, docs_url, \
        tags, labels, annotations, links, slos, created_at, updated_at, last_sequence";
    let mut conn = pool.acquire().await?;
    let mut figures = Vec::new();
    for table in ["bench_raw_copy", "bench_raw_insert"] {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {table} (LIKE catalog_services INCLUDING ALL)"
        )))
        .execute(&mut *conn)
        .await?;
    }
    eprintln!("phase: raw PostgreSQL writes of {rows} rows");
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY bench_raw_copy ({COLUMNS}) FROM STDIN"))
        .await?;
    let mut chunk = String::new();
    for n in 0..rows {
        use std::fmt::Write as _;
        writeln!(
            chunk,
            "raw-{n}\tfiller\tservice\tproduction\tupdate {n}\t\t\t[]\t{{}}\t{{}}\t[]\t[]\t\
             2026-12-07 00:00:00+00\t2026-12-07 00:00:00+00\t{n}"
        )?;
        if chunk.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut chunk).into_bytes()).await?;
        }
    }
    copy.send(chunk.into_bytes()).await?;
    copy.finish().await?;
    figures.push(figure(
        "raw: PostgreSQL COPY of rows shaped like catalog_services (its indexes)",
        rows,
        started.elapsed(),
        Vec::new(),
        "reference",
    ));
    let started = Instant::now();
    let mut n = 0u64;
    while n < rows {
        let batch: Vec<u64> = (n..rows.min(n + 1000)).collect();
        n += batch.len() as u64;
        let names: Vec<String> = batch.iter().map(|i| format!("raw-{i}")).collect();
        let descriptions: Vec<String> = batch.iter().map(|i| format!("update {i}")).collect();
        let sequences: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO bench_raw_insert ({COLUMNS})
             SELECT name, 'filler', 'service', 'production', description, '', '',
                    '[]', '{{}}', '{{}}', '[]', '[]', now(), now(), seq
               FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(name, description, seq)"
        )))
        .bind(&names)
        .bind(&descriptions)
        .bind(&sequences)
        .execute(&mut *conn)
        .await?;
    }
    figures.push(figure(
        "raw: PostgreSQL INSERT ... UNNEST, 1,000 rows a statement, same table",
        rows,
        started.elapsed(),
        Vec::new(),
        "reference",
    ));
    for table in ["bench_raw_copy", "bench_raw_insert"] {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(figures)
}

/// Reads the whole log with a raw ordered consumer: messages and time.
async fn raw_consume(b: &Bench) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let consumer = b
        .log
        .stream()
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", b.log.config().subject_prefix),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut n = 0u64;
    while let Some(m) = messages.next().await {
        let m = m?;
        n += 1;
        if m.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending == 0 {
            break;
        }
    }
    Ok((n, started.elapsed()))
}

/// Reads the whole log through `ReadEvents`: events and time.
async fn read_all(b: &Bench, omit_json: bool) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut stream = b
        .client
        .read_events(pb::ReadEventsRequest {
            omit_json,
            ..Default::default()
        })
        .await?;
    let mut events = 0u64;
    while stream.message().await?.is_some() {
        events += 1;
    }
    Ok((events, started.elapsed()))
}

/// What a catalog rebuild took.
struct Rebuilt {
    messages: u64,
    elapsed: Duration,
    /// The most this process held meanwhile (the rebuild folds into memory), MiB.
    rss_peak: u64,
}

/// Rebuilds the catalog from the whole log, with a progress bar.
async fn rebuild_catalog(b: &Bench) -> anyhow::Result<Rebuilt> {
    let bar = indicatif::ProgressBar::new(0);
    let none = paved_eventlog::audit::TrustedKeys::default();
    let mut rss_peak = rss_mib();
    let started = Instant::now();
    let report = runtime::rebuild(&[CatalogProjection], &b.pool, &b.log, &none, |p| {
        bar.set_length(p.total);
        bar.set_position(p.applied);
        rss_peak = rss_peak.max(rss_mib());
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Rebuilt {
        messages: report.messages,
        elapsed,
        rss_peak,
    })
}

/// What signing checkpoints over the log and verifying it took.
struct Verified {
    checkpointed: u64,
    checkpointing: Duration,
    verified: u64,
    verifying: Duration,
    /// The most this process held while verifying, MiB.
    rss_peak: u64,
}

/// Signs checkpoints up to the end of the log (from where the last one
/// stopped), then verifies the whole log against them.
async fn checkpoint_and_verify(b: &Bench) -> anyhow::Result<Verified> {
    let key = paved_workers::checkpoint::signing_key(&b.pool, None).await?;
    let mut keys = paved_eventlog::audit::TrustedKeys::default();
    keys.add(key.verifying_key());
    let checkpointer =
        paved_workers::checkpoint::Checkpointer::new(b.log.clone(), key, Duration::from_secs(3600));
    let started = Instant::now();
    let checkpointed = b.log.last_sequence().await?;
    while checkpointer.once().await?.is_some() {}
    let checkpointing = started.elapsed();
    let started = Instant::now();
    let mut rss_peak = rss_mib();
    let report = paved_eventlog::audit::verify_log(&b.log, keys, 1, |_, _| {
        rss_peak = rss_peak.max(rss_mib());
    })
    .await?;
    anyhow::ensure!(report.ok(), "the bench's log does not verify: {report:?}");
    Ok(Verified {
        checkpointed,
        checkpointing,
        verified: report.messages,
        verifying: started.elapsed(),
        rss_peak,
    })
}

/// The log grown to 1,000,000 events and then to `top`: at each size what
/// grows with the log, then how each cost per million events grew.
async fn scale_phase(b: &mut Bench, top: u64) -> anyhow::Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut sizes = vec![1_000_000u64.min(top), top];
    sizes.dedup();
    // Per size: seconds per million events of each measure.
    let mut costs: Vec<(u64, [f64; 6])> = Vec::new();
    for size in sizes {
        eprintln!("phase: scale, the log at {size} events");
        b.stop_worker().await;
        fill_log(b, size).await?;
        let total = b.log.last_sequence().await?;
        let at = format!("{:.1}M", total as f64 / 1e6);
        let per_million = |elapsed: Duration, n: u64| elapsed.as_secs_f64() * 1e6 / n.max(1) as f64;

        let (n, consume) = raw_consume(b).await?;
        out.push(figure(
            &format!("scale {at}: raw JetStream ordered consume"),
            n,
            consume,
            Vec::new(),
            "reference",
        ));
        let r = rebuild_catalog(b).await?;
        out.push(figure(
            &format!("scale {at}: rebuild of the catalog"),
            r.messages,
            r.elapsed,
            Vec::new(),
            "linear in the log",
        ));
        out.push(in_mib(
            format!("scale {at}: resident memory, most during the rebuild"),
            r.rss_peak,
            "<= 300 MiB",
        ));
        let (events, read) = read_all(b, true).await?;
        out.push(figure(
            &format!("scale {at}: ReadEvents of the whole log, omit_json"),
            events,
            read,
            Vec::new(),
            ">= 0.7 x the raw consume",
        ));
        let v = checkpoint_and_verify(b).await?;
        out.push(figure(
            &format!("scale {at}: checkpoint (what the last one left)"),
            v.checkpointed,
            v.checkpointing,
            Vec::new(),
            "reference",
        ));
        out.push(figure(
            &format!("scale {at}: audit verify of the whole log"),
            v.verified,
            v.verifying,
            Vec::new(),
            ">= 0.8 x the raw consume",
        ));
        out.push(in_mib(
            format!("scale {at}: resident memory, most during audit verify"),
            v.rss_peak,
            "reference",
        ));
        // Queries at this size, through the API: the owner's services a page
        // of 100 at a time (20 pages), and the catalog as of the middle of
        // the log, replayed in memory.
        let mut latencies = Vec::new();
        let mut token = String::new();
        let started = Instant::now();
        for _ in 0..20 {
            let t = Instant::now();
            let page = b
                .client
                .at(total)
                .list_services(pb::ListServicesRequest {
                    owner: "filler".into(),
                    page_size: 100,
                    page_token: std::mem::take(&mut token),
                    ..Default::default()
                })
                .await?;
            latencies.push(t.elapsed());
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        out.push(figure(
            &format!("scale {at}: ListServices of an owner, pages of 100"),
            latencies.len() as u64,
            started.elapsed(),
            latencies,
            "reference",
        ));
        let middle = b
            .client
            .read_events(pb::ReadEventsRequest {
                from_sequence: total / 2,
                limit: 1,
                omit_json: true,
                ..Default::default()
            })
            .await?
            .message()
            .await?
            .and_then(|r| paved_eventlog::codec::time_from_proto(r.occurred_at.as_ref()))
            .context("the middle of the log")?;
        let started = Instant::now();
        let (catalog, replayed) =
            crate::cli::audit::catalog_at(&b.client, middle, String::new(), String::new()).await?;
        out.push(figure(
            &format!(
                "scale {at}: audit at the middle of the log ({} services then)",
                catalog.services.len()
            ),
            replayed,
            started.elapsed(),
            Vec::new(),
            "1,000,000 events <= 20 s",
        ));
        let stream_bytes = b
            .log
            .jetstream()
            .get_stream(&b.log.config().stream)
            .await?
            .info()
            .await?
            .state
            .bytes;
        let database_bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&b.pool)
            .await?;
        for (what, bytes) in [
            ("the stream", stream_bytes),
            ("the database", database_bytes.max(0) as u64),
        ] {
            out.push(in_mib(
                format!("scale {at}: disk used by {what}"),
                bytes / 1_048_576,
                &format!(
                    "reference; {:.0} bytes an event",
                    bytes as f64 / total.max(1) as f64
                ),
            ));
        }
        costs.push((
            total,
            [
                per_million(consume, n),
                per_million(r.elapsed, r.messages),
                per_million(read, events),
                per_million(v.verifying, v.verified),
                (r.rss_peak as f64),
                (v.rss_peak as f64),
            ],
        ));
    }
    if let [(small, first), (large, last)] = costs[..] {
        let names = [
            "raw ordered consume, s per million events",
            "catalog rebuild, s per million events",
            "ReadEvents omit_json, s per million events",
            "audit verify, s per million events",
            "resident memory during the rebuild, MiB",
            "resident memory during audit verify, MiB",
        ];
        for (i, name) in names.iter().enumerate() {
            out.push(Figure {
                phase: format!(
                    "scale growth: {name}: {:.2} at {:.1}M, {:.2} at {:.1}M (x{:.2})",
                    first[i],
                    small as f64 / 1e6,
                    last[i],
                    large as f64 / 1e6,
                    last[i] / first[i].max(1e-9)
                ),
                target: "linear: x1 per million (memory: bounded by the entities, not the log)"
                    .into(),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

/// Catalog services the log filler spreads its events over.
const FILL_SERVICES: u64 = 50_000;
/// Messages the filler holds before it publishes them.
const FILL_CHUNK: usize = 200_000;

/// Tops the log up to `events` messages with valid catalog commits
/// (registrations, then description updates), published straight to
/// JetStream, continuing the hash chains of earlier fills.
async fn fill_log(b: &mut Bench, events: u64) -> anyhow::Result<()> {
    let have = b.log.last_sequence().await?;
    if have >= events {
        return Ok(());
    }
    let missing = events - have;
    let js = b.log.jetstream().clone();
    let bar = indicatif::ProgressBar::new(missing);
    let team = Name::parse("filler")?;
    let mut fill = Filler::new(&b.log, std::mem::take(&mut b.filled));
    let mut first = have + 1;
    if !fill
        .chains
        .contains_key(&(AggregateKind::Team, team.clone()))
    {
        fill.push(
            AggregateKind::Team,
            &team,
            vec![
                TeamEvent::Created {
                    name: team.clone(),
                    profile: TeamProfile::default(),
                    parent: None,
                }
                .into(),
            ],
            have,
        );
        first += 1;
    }
    let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
    // Registrations first (round robin over the services), then updates.
    for n in first..=events {
        let name = Name::parse(&format!("fill-{}", n % FILL_SERVICES))?;
        let event: paved_domain::Event = if fill
            .chains
            .contains_key(&(AggregateKind::Service, name.clone()))
        {
            spec.description = format!("update {n}");
            ServiceEvent::Updated {
                spec: spec.clone(),
                fields: vec![SpecField::Description],
            }
            .into()
        } else {
            ServiceEvent::Registered {
                name: name.clone(),
                owner: team.clone(),
                spec: spec.clone(),
            }
            .into()
        };
        fill.push(AggregateKind::Service, &name, vec![event], n);
        if fill.messages.len() >= FILL_CHUNK {
            publish(&js, std::mem::take(&mut fill.messages), &bar).await?;
        }
    }
    publish(&js, std::mem::take(&mut fill.messages), &bar).await?;
    bar.finish_and_clear();
    b.filled = fill.chains;
    Ok(())
}

/// Each filled aggregate's last commit hash.
type Chains = HashMap<(AggregateKind, Name), Vec<u8>>;

/// Commits as the write path makes them (each aggregate's hashes chained,
/// subjects as the log names them), to publish straight to JetStream.
struct Filler<'a> {
    log: &'a paved_eventlog::EventLog,
    chains: Chains,
    messages: Vec<(String, Vec<u8>)>,
}

impl<'a> Filler<'a> {
    fn new(log: &'a paved_eventlog::EventLog, chains: Chains) -> Self {
        Self {
            log,
            chains,
            messages: Vec::new(),
        }
    }

    fn push(&mut self, kind: AggregateKind, id: &Name, events: Vec<paved_domain::Event>, n: u64) {
        let mut c = Commit {
            kind,
            aggregate_id: id.clone(),
            command_id: format!("fill-{n}"),
            principal: "bench".into(),
            occurred_at: chrono::Utc::now(),
            correlation_id: format!("fill-{n}"),
            causation_id: String::new(),
            traceparent: String::new(),
            tracestate: String::new(),
            reason: String::new(),
            events,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            command_fingerprint: Vec::new(),
        };
        let prev = self.chains.entry((kind, id.clone())).or_default();
        c.seal(prev);
        prev.clone_from(&c.hash);
        self.messages
            .push((self.log.subject(kind, id), codec::encode_commit(&c)));
    }
}

/// Publishes messages straight to JetStream, many acks in flight.
async fn publish(
    js: &async_nats::jetstream::Context,
    messages: Vec<(String, Vec<u8>)>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let stream = futures::stream::iter(messages).map(|(subject, payload)| {
        let js = js.clone();
        async move { js.publish(subject, Bytes::from(payload)).await }
    });
    let mut acks = stream.buffered(1024);
    let mut pending = futures::stream::FuturesUnordered::new();
    while let Some(ack) = acks.next().await {
        pending.push(ack?.into_future());
        if pending.len() >= 4096
            && let Some(r) = pending.next().await
        {
            r?;
            bar.inc(1);
        }
    }
    while let Some(r) = pending.next().await {
        r?;
        bar.inc(1);
    }
    Ok(())
}

const DORA_TEAMS: usize = 40;
const DORA_SERVICES_PER_TEAM: usize = 10;

/// Two years of delivery history (`events` events) published straight to
/// the log, the delivery projection's catch-up, then 90-day team summaries
/// through `MetricsService`.
/// Runs the delivery projection split `shares` ways (a worker per share)
/// until every share has reached `to`, then stops the workers.
async fn catch_up_delivery(b: &Bench, shares: u32, to: u64) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = Vec::new();
    for share in paved_workers::projections::DeliveryProjection::shares(shares) {
        let worker = ProjectionWorker::new(share, b.pool.clone(), b.log.clone());
        names.push(worker.status().borrow().name.clone());
        tasks.spawn(worker.run(stop.clone()));
    }
    loop {
        let slowest = paved_eventlog::checkpoints::slowest(&b.pool, &names).await?;
        if slowest.unwrap_or(0) >= to {
            break;
        }
        anyhow::ensure!(
            !tasks.is_empty() && tasks.try_join_next().is_none(),
            "a delivery worker stopped during the catch-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

async fn dora_phase(b: &mut Bench, a: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let (events, shares) = (a.dora_events, a.delivery_shares);
    use paved_domain::delivery::{
        ChangeEvent, ChangeSpec, DeploymentEvent, IncidentEvent, Outcome, Target,
    };
    use rand::{Rng, SeedableRng};
    eprintln!("phase: DORA over {events} delivery events");
    let mut out = Vec::new();
    // The organisation, through the API (the catalog worker projects it).
    if b.worker_stop.is_none() {
        b.start_worker();
    }
    let mut last = 0;
    for t in 0..DORA_TEAMS {
        let team = format!("dora-team-{t}");
        b.client
            .create_team(pb::CreateTeamRequest {
                name: team.clone(),
                ..Default::default()
            })
            .await?;
        for s in 0..DORA_SERVICES_PER_TEAM {
            last = b
                .client
                .register_service(pb::RegisterServiceRequest {
                    name: format!("dora-{t}-{s}"),
                    owner: team.clone(),
                    spec: Some(pb::ServiceSpec {
                        r#type: pb::ServiceType::Service.into(),
                        lifecycle: pb::Lifecycle::Production.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?
                .sequence;
        }
    }
    b.client.at(last).get_team("dora-team-0").await?;

    // History: per deployment two changes and the deployment (3 events);
    // an incident (3 events) every 50 deployments.
    let now = chrono::Utc::now();
    let span = chrono::Duration::days(730);
    let units = events / 3;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut fill = Filler::new(&b.log, Chains::new());
    let mut n = 0u64;
    let mut produced = 0u64;
    while produced + 3 <= events && n < units {
        n += 1;
        let t = rng.random_range(0..DORA_TEAMS);
        let service = Name::parse(&format!(
            "dora-{t}-{}",
            rng.random_range(0..DORA_SERVICES_PER_TEAM)
        ))?;
        let finished = now - span + span * (n as i32) / (units as i32).max(1);
        let mut commits = Vec::new();
        for k in 0..2 {
            let sha = format!("{:032x}{:08x}", rng.random::<u128>(), rng.random::<u32>());
            let committed = finished - chrono::Duration::minutes(rng.random_range(60..5 * 24 * 60));
            let sha = Name::parse(&sha)?;
            fill.push(
                AggregateKind::Change,
                &sha,
                vec![
                    ChangeEvent::Recorded {
                        sha: sha.clone(),
                        spec: ChangeSpec {
                            service: service.clone(),
                            authored_at: None,
                            committed_at: committed,
                            merged_at: Some(committed),
                            pr_number: n * 2 + k,
                            pr_url: String::new(),
                            author: "bench".into(),
                            title: String::new(),
                            backfill: false,
                        },
                    }
                    .into(),
                ],
                n,
            );
            commits.push(sha.to_string());
        }
        let id = Name::parse(&format!("d-bench-{n}"))?;
        let ok = rng.random_bool(0.9);
        fill.push(
            AggregateKind::Deployment,
            &id,
            vec![
                DeploymentEvent::Recorded {
                    id: id.clone(),
                    target: Target {
                        service: service.clone(),
                        environment: Name::parse("production")?,
                        revision: commits[1].clone(),
                        commits,
                        rollback_of: None,
                    },
                    source: "bench".into(),
                    started_at: finished - chrono::Duration::minutes(5),
                    outcome: Outcome {
                        succeeded: ok,
                        finished_at: finished,
                        ..Outcome::default()
                    },
                }
                .into(),
            ],
            n,
        );
        produced += 3;
        if n.is_multiple_of(50) && produced + 3 <= events {
            let inc = Name::parse(&format!("inc-bench-{n}"))?;
            let started = finished + chrono::Duration::minutes(30);
            fill.push(
                AggregateKind::Incident,
                &inc,
                vec![
                    IncidentEvent::Opened {
                        id: inc.clone(),
                        title: "bench".into(),
                        services: vec![service.clone()],
                        severity: "sev3".into(),
                        started_at: started,
                    }
                    .into(),
                    IncidentEvent::Linked {
                        deployment: id.clone(),
                    }
                    .into(),
                    IncidentEvent::Resolved {
                        resolved_at: started + chrono::Duration::minutes(rng.random_range(20..600)),
                    }
                    .into(),
                ],
                n,
            );
            produced += 3;
        }
    }
    let bar = indicatif::ProgressBar::new(fill.messages.len() as u64);
    publish(&b.log.jetstream().clone(), fill.messages, &bar).await?;
    bar.finish_and_clear();
    let to = b.log.last_sequence().await?;

    // The delivery projection catches up from the start of the log: one
    // worker, then (the same events again, from empty tables) `shares`.
    let started = Instant::now();
    catch_up_delivery(b, 1, to).await?;
    out.push(figure(
        &format!("delivery projection catch-up ({produced} delivery events)"),
        produced,
        started.elapsed(),
        Vec::new(),
        "reference (events/s)",
    ));
    if shares > 1 {
        let mut conn = b.pool.acquire().await?;
        sqlx::raw_sql(
            "DELETE FROM delivery_deployments; DELETE FROM delivery_changes; DELETE FROM delivery_incidents",
        )
        .execute(&mut *conn)
        .await?;
        paved_eventlog::checkpoints::forget(&mut conn, paved_eventlog::readmodel::DELIVERY).await?;
        let started = Instant::now();
        catch_up_delivery(b, shares, to).await?;
        out.push(figure(
            &format!("delivery projection catch-up in {shares} shares (same events)"),
            produced,
            started.elapsed(),
            Vec::new(),
            "more than one worker (events/s)",
        ));
    }

    // 90-day summaries of random teams, one at a time.
    let mut latencies = Vec::new();
    let started = Instant::now();
    for i in 0..200 {
        let t = Instant::now();
        b.client
            .dora(pb::GetDoraRequest {
                team: format!("dora-team-{}", i % DORA_TEAMS),
                window_days: 90,
                ..Default::default()
            })
            .await?;
        latencies.push(t.elapsed());
    }
    out.push(figure(
        "GetDora: 90-day summary of a team (one at a time)",
        200,
        started.elapsed(),
        latencies,
        "<= 20 ms with 1,000,000 events",
    ));
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        b.client
            .dora(pb::GetDoraRequest {
                window_days: 90,
                daily: true,
                ..Default::default()
            })
            .await?;
        latencies.push(t.elapsed());
    }
    out.push(figure(
        "GetDora: 90-day summary of the organisation with the daily series",
        20,
        started.elapsed(),
        latencies,
        "reference",
    ));
    // What a Prometheus scrape costs: /metrics computes the last 30 days'
    // DORA figures of the organisation, every team and every service.
    let sources = crate::metrics::Sources {
        log: b.log.clone(),
        pool: b.pool.clone(),
        survey_min_group: 5,
        commands: None,
        projections: Vec::new(),
        dora_attribution: a.settings.dora_attribution(),
        webhooks: None,
    };
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..10 {
        let t = Instant::now();
        let text = crate::metrics::render(&sources).await;
        anyhow::ensure!(
            text.contains("paved_dora_deployments_per_day"),
            "/metrics without DORA figures"
        );
        latencies.push(t.elapsed());
    }
    out.push(figure(
        "/metrics render (DORA of the organisation, each team and service, 30 days)",
        10,
        started.elapsed(),
        latencies,
        "reference",
    ));
    Ok(out)
}

/// Runs git in `dir` (the bench's repositories).
async fn git(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@localhost")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@localhost")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `n` namespace requests (one per team, the policy automatic) planned and
/// committed by the GitOps writer into a local bare repository, against a
/// raw loop of `git commit` + `git push` of one file each into another.
async fn provisioning_phase(b: &Bench, n: usize) -> anyhow::Result<Vec<Figure>> {
    use paved_workers::effects::gitops::{
        GitTiming, GitopsWriter, ProvisioningConfig, RepositoryConfig,
    };
    let mut out = Vec::new();
    let dir =
        std::env::temp_dir().join(format!("paved-bench-git-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        for name in ["raw.git", "paved.git"] {
            git(&dir, &["init", "--quiet", "--bare", "--initial-branch=main", name]).await?;
        }
        // The raw limit: commit one file and push it, n times.
        eprintln!("phase: raw git commit + push");
        let clone = dir.join("raw");
        git(&dir, &["clone", "--quiet", dir.join("raw.git").to_str().unwrap_or_default(), "raw"]).await?;
        git(&clone, &["checkout", "--quiet", "-b", "main"]).await?;
        let mut lat = Vec::with_capacity(n);
        let started = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            std::fs::write(clone.join(format!("f{i}.yaml")), format!("i: {i}\n"))?;
            git(&clone, &["add", "--all"]).await?;
            git(&clone, &["commit", "--quiet", "-m", &format!("raw {i}")]).await?;
            git(&clone, &["push", "--quiet", "origin", "HEAD:refs/heads/main"]).await?;
            lat.push(t.elapsed());
        }
        out.push(figure("raw: git commit + push, one file each", n as u64, started.elapsed(), lat, "reference (commits/s)"));

        eprintln!("phase: {n} namespace requests through the GitOps writer");
        for i in 0..n {
            b.client
                .create_team(pb::CreateTeamRequest {
                    name: format!("prov-{i}"),
                    ..Default::default()
                })
                .await?;
        }
        let config = ProvisioningConfig {
            repository: Some(RepositoryConfig {
                url: dir.join("paved.git").to_string_lossy().into_owned(),
                branch: "main".into(),
                token_env: None,
                token_file: None,
                ssh_key_file: None,
                author_name: "Paved".into(),
                author_email: "paved@localhost".into(),
                workdir: Some(dir.join("work")),
            }),
            policy: Some(paved_domain::provisioning::Policy {
                default: paved_domain::provisioning::Approver::Automatic,
                rules: Vec::new(),
                ..Default::default()
            }),
            timing: GitTiming { scan_ms: 20, push_attempts: 10 },
            ..Default::default()
        };
        let stop = CancellationToken::new();
        let projection = ProjectionWorker::new(
            paved_workers::projections::ProvisioningProjection,
            b.pool.clone(),
            b.log.clone(),
        );
        let writer = GitopsWriter::new(
            paved_eventlog::Executor::new(b.log.clone(), 10_000),
            b.pool.clone(),
            &config,
        )
        .context("a writer with a repository")?;
        let p = tokio::spawn(projection.run(stop.clone()));
        let w = tokio::spawn(writer.run(stop.clone()));
        let started = Instant::now();
        let client = b.client.clone();
        concurrent(16, n, move |i| {
            let client = client.clone();
            async move {
                client
                    .request_resource(pb::RequestResourceRequest {
                        team: format!("prov-{i}"),
                        kind: "namespace".into(),
                        environment: "staging".into(),
                        size: "small".into(),
                        ..Default::default()
                    })
                    .await?;
                Ok(())
            }
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(1800);
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = loop {
            let rows: Vec<(DateTime<Utc>, DateTime<Utc>, String)> = sqlx::query_as(
                "SELECT requested_at, updated_at, state FROM provisioning_requests WHERE team LIKE 'prov-%'",
            )
            .fetch_all(&b.pool)
            .await?;
            let failed = rows.iter().filter(|r| r.2 == "failed").count();
            anyhow::ensure!(failed == 0, "{failed} provisioning requests failed");
            if rows.len() == n && rows.iter().all(|r| r.2 == "applied") {
                break rows.into_iter().map(|(a, u, _)| (a, u)).collect();
            }
            anyhow::ensure!(Instant::now() < deadline, "the writer did not apply {n} requests in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let elapsed = started.elapsed();
        stop.cancel();
        p.await.ok();
        w.await.ok();
        let lat: Vec<Duration> = rows
            .iter()
            .map(|(a, u)| (*u - *a).to_std().unwrap_or_default())
            .collect();
        out.push(figure(
            "provisioning: namespace requested → planned → committed and pushed",
            n as u64,
            elapsed,
            lat,
            "reference (commits/s; latency request → commit)",
        ));
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(out)
}

/// `n` golden-path tasks of the rust-service template for one team (16
/// clients): each makes a repository (a local bare one), registers its
/// catalog entry, gets the team's staging namespace (the first task; the
/// others find it) and its Argo CD Application committed by the GitOps
/// writer (no Argo CD watches: its own sync is not counted). Beside it, the
/// raw limit of the repository part: `git init --bare`, a commit of the same
/// files and a push, `n` times.
async fn templates_phase(
    b: &mut Bench,
    n: usize,
    templates: &std::path::Path,
) -> anyhow::Result<Vec<Figure>> {
    use paved_workers::effects::gitops::{
        GitTiming, GitopsWriter, ProvisioningConfig, RepositoryConfig,
    };
    use paved_workers::effects::scaffolder::{PublishConfig, TaskRunner, TemplatesConfig};
    let root = templates.join("rust-service");
    let document = std::fs::read_to_string(root.join("template.yaml")).with_context(|| {
        format!(
            "the golden-path phase reads {} (run the bench from the repository, or pass --templates)",
            root.display()
        )
    })?;
    let mut files = Vec::new();
    let mut stack = vec![root.join("skeleton")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&root)?.to_string_lossy().into_owned();
                files.push((rel, std::fs::read_to_string(&path)?));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!(
        "paved-bench-templates-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(dir.join("raw"))?;
    if b.worker_stop.is_none() {
        b.start_worker();
    }
    let result = async {
        // The raw limit: a bare repository, the skeleton committed and pushed.
        eprintln!("phase: raw git init + commit + push of a skeleton");
        let mut lat = Vec::with_capacity(n);
        let started = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            let bare = dir.join("raw").join(format!("r{i}.git"));
            git(&dir, &["init", "--quiet", "--bare", "--initial-branch=main", bare.to_str().unwrap_or_default()]).await?;
            let work = dir.join("raw").join(format!("w{i}"));
            for (path, content) in &files {
                let file = work.join(path.trim_start_matches("skeleton/"));
                std::fs::create_dir_all(file.parent().unwrap_or(&work))?;
                std::fs::write(file, content)?;
            }
            git(&work, &["init", "--quiet", "--initial-branch=main"]).await?;
            git(&work, &["add", "--all"]).await?;
            git(&work, &["commit", "--quiet", "-m", "initial"]).await?;
            git(&work, &["push", "--quiet", bare.to_str().unwrap_or_default(), "HEAD:refs/heads/main"]).await?;
            lat.push(t.elapsed());
        }
        out.push(figure("raw: git init --bare + commit + push of the skeleton", n as u64, started.elapsed(), lat, "reference (repositories/s)"));

        eprintln!("phase: {n} golden-path tasks (rust-service) through the task runner");
        for team in ["platform", "golden"] {
            b.client
                .create_team(pb::CreateTeamRequest {
                    name: team.into(),
                    ..Default::default()
                })
                .await?;
        }
        b.client
            .publish_template(pb::PublishTemplateRequest {
                document_yaml: document.clone(),
                files: files
                    .iter()
                    .map(|(path, content)| pb::TemplateFile {
                        path: path.clone(),
                        content: content.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
            .await?;
        std::process::Command::new("git")
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(dir.join("gitops.git"))
            .output()?;
        let provisioning = ProvisioningConfig {
            repository: Some(RepositoryConfig {
                url: dir.join("gitops.git").to_string_lossy().into_owned(),
                branch: "main".into(),
                token_env: None,
                token_file: None,
                ssh_key_file: None,
                author_name: "Paved".into(),
                author_email: "paved@localhost".into(),
                workdir: Some(dir.join("gitops-work")),
            }),
            policy: Some(paved_domain::provisioning::Policy {
                default: paved_domain::provisioning::Approver::Automatic,
                rules: Vec::new(),
                ..Default::default()
            }),
            timing: GitTiming { scan_ms: 20, push_attempts: 10 },
            ..Default::default()
        };
        let config = TemplatesConfig {
            publish: PublishConfig {
                local_root: Some(dir.join("repositories")),
                workdir: Some(dir.join("scaffolder-work")),
                ..Default::default()
            },
            timing: paved_workers::effects::scaffolder::RunnerTiming { scan_ms: 20 },
        };
        let stop = CancellationToken::new();
        let mut jobs = tokio::task::JoinSet::new();
        let provisioning_read_model = ProjectionWorker::new(
            paved_workers::projections::ProvisioningProjection,
            b.pool.clone(),
            b.log.clone(),
        );
        let templates_read_model = ProjectionWorker::new(
            paved_workers::projections::TemplatesProjection,
            b.pool.clone(),
            b.log.clone(),
        );
        let token = stop.clone();
        jobs.spawn(async move {
            if let Err(e) = provisioning_read_model.run(token).await {
                tracing::error!(error = %e, "bench projection failed");
            }
        });
        let token = stop.clone();
        jobs.spawn(async move {
            if let Err(e) = templates_read_model.run(token).await {
                tracing::error!(error = %e, "bench projection failed");
            }
        });
        let writer = GitopsWriter::new(paved_eventlog::Executor::new(b.log.clone(), 10_000), b.pool.clone(), &provisioning)
            .context("a writer with a repository")?;
        jobs.spawn(writer.run(stop.clone()));
        let runner = TaskRunner::new(
            paved_eventlog::Executor::new(b.log.clone(), 10_000),
            b.pool.clone(),
            config,
            provisioning.rules(),
            Default::default(),
            std::sync::Arc::new(crate::registrar::CatalogRegistrar::new(paved_eventlog::Executor::new(b.log.clone(), 10_000))),
        );
        jobs.spawn(runner.run(stop.clone()));
        let create = |name: String| pb::CreateTaskRequest {
            template: "rust-service".into(),
            parameters_json: serde_json::json!({
                "name": name,
                "owner": "golden",
                "repoUrl": format!("github.com?owner=bench&repo={name}"),
            })
            .to_string(),
            ..Default::default()
        };
        // One at a time first: what a developer waits for when nothing queues.
        let solo = n.clamp(1, 10);
        let mut lat = Vec::with_capacity(solo);
        let started = Instant::now();
        for i in 0..solo {
            let t = Instant::now();
            let r = b.client.create_task(create(format!("solo-{i}"))).await?;
            loop {
                let task = b.client.at(r.sequence).task(&r.task_id).await?;
                anyhow::ensure!(task.status != "failed", "golden-path task {} failed: {task:?}", r.task_id);
                if task.status == "completed" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lat.push(t.elapsed());
        }
        out.push(figure(
            "golden path, one at a time: paved create → completed (as the client sees it)",
            solo as u64,
            started.elapsed(),
            lat,
            "reference (create → last step)",
        ));
        let started = Instant::now();
        let client = b.client.clone();
        concurrent(16, n, move |i| {
            let client = client.clone();
            async move {
                let name = format!("golden-{i}");
                client
                    .create_task(pb::CreateTaskRequest {
                        template: "rust-service".into(),
                        parameters_json: serde_json::json!({
                            "name": name,
                            "owner": "golden",
                            "repoUrl": format!("github.com?owner=bench&repo={name}"),
                        })
                        .to_string(),
                        ..Default::default()
                    })
                    .await?;
                Ok(())
            }
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(1800);
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = loop {
            let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> = sqlx::query_as(
                "SELECT created_at, finished_at, status FROM template_tasks
                  WHERE team = 'golden' AND parameters->>'name' LIKE 'golden-%'",
            )
            .fetch_all(&b.pool)
            .await?;
            let failed = rows.iter().filter(|r| r.2 == "failed").count();
            anyhow::ensure!(failed == 0, "{failed} golden-path tasks failed");
            if rows.len() == n && rows.iter().all(|r| r.2 == "completed") {
                break rows.into_iter().map(|(a, f, _)| (a, f.unwrap_or(a))).collect();
            }
            anyhow::ensure!(Instant::now() < deadline, "the runner did not complete {n} tasks in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let elapsed = started.elapsed();
        stop.cancel();
        while jobs.join_next().await.is_some() {}
        let lat: Vec<Duration> = rows
            .iter()
            .map(|(a, f)| (*f - *a).to_std().unwrap_or_default())
            .collect();
        out.push(figure(
            "golden path: paved create → repository, catalog entry, namespace, Argo CD application (Argo CD's own sync not counted)",
            n as u64,
            elapsed,
            lat,
            "reference (tasks/s; latency create → last step)",
        ));
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(out)
}

/// Plugins: webhook deliveries to a local receiver with many
/// installations (next to unsigned posts to it, same concurrency), and one
/// pulling plugin's subscription (next to the raw consume measured above).
async fn plugins_phase(
    b: &mut Bench,
    installations: usize,
    events: usize,
) -> anyhow::Result<Vec<Figure>> {
    use paved_workers::effects::plugin_webhooks::{Guard, WebhookConfig, WebhookDeliverer};
    let mut out = Vec::new();
    if b.worker_stop.is_none() {
        b.start_worker();
    }
    // The receiver: counts posts, answers 204.
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_body: Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    // The raw limit: plain posts of a payload of the same size, 32 at once
    // (the deliverer serves up to 32 installations at once).
    eprintln!("phase: raw HTTP posts to a local receiver");
    let http = reqwest::Client::new();
    let n = (installations * events).min(50_000);
    let body = Bytes::from(vec![b'x'; 900]);
    let (t, lat) = concurrent(32, n, {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        move |_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                http.post(&url)
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        }
    })
    .await?;
    out.push(figure(
        "raw: HTTP POST to a local receiver, 32 at once",
        n as u64,
        t,
        lat,
        "reference (posts/s)",
    ));

    eprintln!("phase: {installations} webhook installations × {events} events");
    let stop = CancellationToken::new();
    let mut jobs = tokio::task::JoinSet::new();
    let plugins_read_model = ProjectionWorker::new(
        paved_workers::projections::PluginsProjection,
        b.pool.clone(),
        b.log.clone(),
    );
    let token = stop.clone();
    jobs.spawn(async move {
        if let Err(e) = plugins_read_model.run(token).await {
            tracing::error!(error = %e, "bench projection failed");
        }
    });
    let result = async {
        b.client
            .create_team(pb::CreateTeamRequest {
                name: "plugins".into(),
                ..Default::default()
            })
            .await?;
        let manifest = |webhook: &str| pb::PluginManifest {
            version: "1.0.0".into(),
            publisher: "plugins".into(),
            title: "bench".into(),
            scopes: vec!["events:read:catalog".into()],
            event_types: vec!["ServiceRegistered".into()],
            webhook_url: webhook.to_owned(),
            ..Default::default()
        };
        for (plugin, webhook) in [("bench-hook", url.as_str()), ("bench-pull", "")] {
            b.client
                .publish_plugin(pb::PublishPluginRequest {
                    plugin: plugin.into(),
                    manifest: Some(manifest(webhook)),
                    ..Default::default()
                })
                .await?;
        }
        let install = |installation: String, plugin: &str| pb::InstallPluginRequest {
            installation,
            plugin: plugin.into(),
            version: "1.0.0".into(),
            scopes: vec!["events:read:catalog".into()],
            ..Default::default()
        };
        for i in 0..installations {
            b.client
                .install_plugin(install(format!("hook-{i}"), "bench-hook"))
                .await?;
        }
        let pull = b
            .client
            .install_plugin(install("pull".into(), "bench-pull"))
            .await?;
        let deliverer = WebhookDeliverer::new(
            paved_eventlog::Executor::new(b.log.clone(), 10_000),
            b.pool.clone(),
            b.log.clone(),
            WebhookConfig {
                guard: Guard {
                    allow: vec!["127.0.0.0/8".parse()?],
                },
                allow_http: true,
                scan: Duration::from_millis(20),
                ..Default::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
        let before = received.load(std::sync::atomic::Ordering::Relaxed);
        let client = b.client.clone();
        concurrent(32, events, move |i| {
            let client = client.clone();
            async move {
                let mut r = service_request(&format!("plugin-svc-{i}"));
                r.owner = "plugins".into();
                client.register_service(r).await?;
                Ok(())
            }
        })
        .await?;
        let last = b.log.last_sequence().await?;
        let started = Instant::now();
        jobs.spawn(deliverer.run(stop.clone()));
        let want = before + (installations * events) as u64;
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let lagging: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM plugin_installations
                  WHERE webhook_url <> '' AND cursor < $1",
            )
            .bind(last as i64)
            .fetch_one(&b.pool)
            .await?;
            if lagging == 0 && received.load(std::sync::atomic::Ordering::Relaxed) >= want {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the deliverer did not finish in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let posts = received.load(std::sync::atomic::Ordering::Relaxed) - before;
        out.push(figure(
            &format!("plugin webhooks: {installations} installations × {events} events, signed, cursors recorded"),
            posts,
            started.elapsed(),
            Vec::new(),
            "reference (posts/s; vs the raw posts above)",
        ));

        // One pulling plugin reads the same events through its subscription.
        let plugin = Client::connect(b.app_url.clone(), &pull.token).await?;
        let started = Instant::now();
        let mut stream = plugin.subscribe_plugin_events(true).await?;
        let mut got = 0usize;
        while got < events {
            let Some(m) = stream.message().await? else { break };
            anyhow::ensure!(m.record.is_some(), "an empty record");
            got += 1;
        }
        out.push(figure(
            "SubscribePluginEvents: one plugin's backlog (omit_json)",
            got as u64,
            started.elapsed(),
            Vec::new(),
            "reference (events/s; vs the raw consume above)",
        ));
        anyhow::Ok(())
    }
    .await;
    stop.cancel();
    while jobs.join_next().await.is_some() {}
    receiver.abort();
    result?;
    Ok(out)
}
