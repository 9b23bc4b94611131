//! [`Application`]: the API and the workers, built from [`Settings`], run
//! until a shutdown token fires, then drained.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use paved_api::{
    Authenticator, CatalogApi, CommandCounters, DeliveryApi, EventLogApi, Freshness, MetricsApi,
    ProvisioningApi, SurveyApi, TemplateApi,
};
use paved_domain::Principal;
use paved_eventlog::{EventLog, Executor};
use paved_proto::v1::catalog_service_server::CatalogServiceServer;
use paved_proto::v1::delivery_service_server::DeliveryServiceServer;
use paved_proto::v1::event_log_service_server::EventLogServiceServer;
use paved_proto::v1::metrics_service_server::MetricsServiceServer;
use paved_proto::v1::provisioning_service_server::ProvisioningServiceServer;
use paved_proto::v1::survey_service_server::SurveyServiceServer;
use paved_proto::v1::template_service_server::TemplateServiceServer;
use paved_workers::registry::{self, EffectNeeds, Handles, ProjectionNeeds};
use paved_workers::{Health, ProjectionStatus};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::connections::{LimitedListener, Limits};
use crate::settings::Settings;
use paved_eventlog::audit::TrustedKeys;

/// Largest request the API accepts (a Backstage import of ~20,000 entities).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest response it sends (a Backstage export).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Concurrent streams one gRPC connection may open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Largest header block (metadata) a gRPC request may send.
pub const MAX_HEADER_LIST: u32 = 16 * 1024;
/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Which halves run in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub workers: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        workers: true,
    };
    pub const API: Roles = Roles {
        api: true,
        workers: false,
    };
    pub const WORKERS: Roles = Roles {
        api: false,
        workers: true,
    };
}

/// A built, not yet running, Paved.
pub struct Application {
    settings: Settings,
    log: EventLog,
    pool: PgPool,
    listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    webhook_listener: Option<TcpListener>,
    admin_token: Option<String>,
    survey_keys: paved_eventlog::SurveyKeys,
    signing_key: paved_eventlog::audit::SigningKey,
    /// Keys whose quarantines the projections and ReadEvents honour.
    trusted: TrustedKeys,
    statuses: Vec<watch::Receiver<ProjectionStatus>>,
    roles: Roles,
    /// The projection workers (empty without the workers role).
    projections: Vec<Runner>,
    /// `PAVED_PROVISIONING_CONFIG` (defaults when unset).
    provisioning: paved_workers::effects::gitops::ProvisioningConfig,
    /// `PAVED_TEMPLATES_CONFIG` (defaults when unset).
    templates: paved_workers::effects::scaffolder::TemplatesConfig,
}

/// A worker's run, started with the shutdown token.
type Runner = Box<
    dyn FnOnce(CancellationToken) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send,
>;

impl Application {
    /// Connects to NATS and PostgreSQL, creates or verifies the stream,
    /// creates and migrates the database, and binds the API's port.
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        let nats = settings.connect_nats().await?;
        let log = EventLog::open(nats, settings.log_config())
            .await
            .context("cannot open the event log stream")?;
        let pool = crate::db::connect(&settings.database_url, settings.db_pool_size)
            .await
            .with_context(|| "cannot prepare the PostgreSQL database".to_string())?;
        let admin_token = if settings.dev && !paved_api::auth::any_token_issued(&pool).await? {
            Some(paved_api::auth::create_token(&pool, &Principal::admin("admin")).await?)
        } else {
            None
        };
        let listener = if roles.api {
            Some(
                TcpListener::bind(settings.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", settings.listen))?,
            )
        } else {
            None
        };
        let metrics_listener = match settings.metrics_listen.trim() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for /metrics"))?,
            ),
        };
        let webhook_listener = match settings.webhook_listen.trim() {
            "" => None,
            _ if !roles.api => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for webhooks"))?,
            ),
        };
        let provisioning = match &settings.provisioning_config {
            Some(path) => paved_workers::effects::gitops::ProvisioningConfig::load(path)
                .map_err(anyhow::Error::msg)
                .context("PAVED_PROVISIONING_CONFIG")?,
            None => Default::default(),
        };
        let templates = match &settings.templates_config {
            Some(path) => paved_workers::effects::scaffolder::TemplatesConfig::load(path)
                .map_err(anyhow::Error::msg)
                .context("PAVED_TEMPLATES_CONFIG")?,
            None => Default::default(),
        };
        let survey_keys = crate::secrets::survey_keys(&settings, &pool).await?;
        // The audit key signs checkpoints; it and the trusted keys verify
        // quarantines, which the projections honour.
        let signing_key =
            paved_workers::checkpoint::signing_key(&pool, settings.audit_signing_key.as_deref())
                .await?;
        let trusted = crate::secrets::trusted_keys(&settings, Some(&signing_key), &[])?;
        let (projections, statuses): (Vec<Runner>, Vec<_>) = if roles.workers {
            let needs = ProjectionNeeds {
                survey_keys: survey_keys.clone(),
                delivery_partitions: settings.delivery_partitions,
            };
            let handles = Handles {
                pool: pool.clone(),
                log: log.clone(),
                trusted: trusted.clone(),
            };
            registry::read_models(&needs)
                .iter()
                .flat_map(|m| m.workers(&handles))
                .map(|(job, status)| {
                    let name = status.borrow().name.clone();
                    let run: Runner = Box::new(move |token| {
                        Box::pin(async move {
                            job(token)
                                .await
                                .with_context(|| format!("{name} projection stopped"))
                        })
                    });
                    (run, status)
                })
                .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            settings,
            log,
            pool,
            listener,
            metrics_listener,
            webhook_listener,
            admin_token,
            survey_keys,
            signing_key,
            trusted,
            statuses,
            roles,
            projections,
            provisioning,
            templates,
        })
    }

    /// The API's address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The `/metrics` endpoint's address, if it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The webhook endpoints' address, if they are on.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The admin token created on first start in dev mode.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Live status of each projection this process runs.
    pub fn projection_statuses(&self) -> Vec<watch::Receiver<ProjectionStatus>> {
        self.statuses.clone()
    }

    /// Serves until `shutdown` fires; then stops taking requests, lets the
    /// in-flight ones and the current batches finish, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let workers = self.roles.workers;
        let (health, health_service) = tonic_health::server::health_reporter();
        for run in self.projections {
            tasks.spawn(run(shutdown.clone()));
        }
        if workers {
            let argocd = match &self.settings.argocd_config {
                Some(path) => paved_workers::effects::deployer::ArgoConfig::load(path)
                    .map_err(anyhow::Error::msg)?,
                None => paved_workers::effects::deployer::ArgoConfig {
                    environments: Default::default(),
                    timing: Default::default(),
                },
            };
            tracing::info!(environments = ?argocd.environments.keys().collect::<Vec<_>>(), "Argo CD deployer");
            let key = self.signing_key.clone();
            if self.settings.audit_checkpoint_ms > 0 {
                tracing::info!(key_id = key.id(), public_key = %key.public_hex(), "audit checkpoints signed with");
            }
            let jobs = registry::effects(EffectNeeds {
                pool: self.pool.clone(),
                log: self.log.clone(),
                argocd: &argocd,
                provisioning: &self.provisioning,
                templates: &self.templates,
                registrar: std::sync::Arc::new(crate::registrar::CatalogRegistrar::new(
                    Executor::new(self.log.clone(), 10_000),
                )),
                checkpoints: (self.settings.audit_checkpoint_ms > 0).then(|| {
                    (
                        key,
                        Duration::from_millis(self.settings.audit_checkpoint_ms),
                    )
                }),
                webhooks: self.settings.plugin_webhooks(),
            })
            .map_err(anyhow::Error::msg)?;
            for (name, job) in jobs {
                let token = shutdown.clone();
                tasks.spawn(
                    async move { job(token).await.with_context(|| format!("{name} stopped")) },
                );
            }
        }
        for status in self.statuses.clone() {
            tasks.spawn(report_health(status, health.clone(), shutdown.clone()));
        }
        let counters = self.listener.as_ref().map(|_| CommandCounters::default());
        let webhook_deliveries = self
            .webhook_listener
            .as_ref()
            .map(|_| paved_api::webhooks::DeliveryLog::default());
        if let Some(listener) = self.metrics_listener {
            let sources = crate::metrics::Sources {
                log: self.log.clone(),
                pool: self.pool.clone(),
                survey_min_group: self.settings.survey_min_group,
                commands: counters.clone(),
                projections: self.statuses.clone(),
                dora_attribution: self.settings.dora_attribution(),
                webhooks: webhook_deliveries.clone(),
            };
            tasks.spawn(crate::metrics::serve(listener, sources, shutdown.clone()));
        }
        if let Some(listener) = self.listener {
            let executor = Executor::new(self.log.clone(), self.settings.cache_capacity);
            // The webhooks, beside the API (they share its write-path cache).
            if let Some(listener) = self.webhook_listener {
                let hooks = paved_api::webhooks::Webhooks::new(
                    executor.clone(),
                    self.pool.clone(),
                    paved_api::webhooks::Secrets {
                        github: self.settings.github_webhook_secret.clone(),
                        argocd_token: self.settings.argocd_webhook_token.clone(),
                        incident: self.settings.incident_webhook_secret.clone(),
                        pagerduty: self.settings.pagerduty_webhook_secrets.clone(),
                        alertmanager_token: self.settings.alertmanager_webhook_token.clone(),
                    },
                    webhook_deliveries.clone().unwrap_or_default(),
                );
                let token = shutdown.clone();
                tasks.spawn(async move {
                    tracing::info!(addr = %listener.local_addr()?, "webhooks listening");
                    let listener = LimitedListener::new(listener, Limits::WEBHOOKS, "webhooks");
                    axum::serve(listener, hooks.router())
                        .with_graceful_shutdown(async move { token.cancelled().await })
                        .await?;
                    Ok(())
                });
            }
            let freshness = Freshness::new(
                self.pool.clone(),
                self.log.clone(),
                self.settings.read_wait(),
            )
            .with_shares(
                paved_eventlog::readmodel::DELIVERY,
                self.settings.delivery_partitions,
            );
            // In the set: it ends with the rest (a crash of the process in
            // tests, which aborts the set, leaves no listener holding the pool).
            let checkpoints = freshness.clone().listen(shutdown.clone());
            tasks.spawn(async move {
                checkpoints.await;
                Ok(())
            });
            let auth = Authenticator::new(self.pool.clone());
            let counters = counters.unwrap_or_default();
            let surveys = SurveyApi::new(
                executor.clone(),
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                counters.clone(),
                self.survey_keys.clone(),
                self.settings.survey_min_group,
            );
            let events = EventLogApi::new(self.log.clone(), auth.clone(), self.pool.clone())
                .with_quarantine_keys(self.trusted.clone())
                .with_shutdown(shutdown.clone());
            let delivery = DeliveryApi::new(
                executor.clone(),
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                counters.clone(),
            )
            .with_webhook_log(webhook_deliveries.clone());
            let dora = MetricsApi::new(
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                self.settings.dora_attribution(),
            );
            let provisioning = ProvisioningApi::new(
                executor.clone(),
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                counters.clone(),
                self.provisioning.rules(),
            );
            let templates = TemplateApi::new(
                executor.clone(),
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                counters.clone(),
            );
            let plugins = paved_api::PluginApi::new(
                executor.clone(),
                self.log.clone(),
                self.pool.clone(),
                auth.clone(),
                freshness.clone(),
                counters.clone(),
            )
            .with_quarantine_keys(self.trusted.clone())
            .with_shutdown(shutdown.clone());
            let access = paved_api::access::AccessLayer::new(auth.clone());
            let catalog = CatalogApi::new(executor, self.pool.clone(), auth, freshness, counters);
            tasks.spawn(watch_dependencies(
                health.clone(),
                self.log.clone(),
                self.pool.clone(),
                self.statuses.clone(),
                shutdown.clone(),
            ));
            let descriptors = std::sync::Arc::new(crate::reflection::Descriptors::new(&[
                paved_proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ])?);
            let reflection = crate::reflection::v1::ReflectionV1::server(descriptors.clone());
            let reflection_alpha =
                crate::reflection::v1alpha::ReflectionV1Alpha::server(descriptors);
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "gRPC API listening");
            let server = tonic::transport::Server::builder()
                .layer(crate::telemetry::GrpcTraceLayer)
                .layer(crate::request_limit::RequestLimitLayer {
                    limit: MAX_REQUEST_BYTES,
                })
                // Every paved.v1 RPC: authenticated, and its scope checked.
                .layer(access)
                .tcp_nodelay(true)
                // Dead or silent peers are found by HTTP/2 pings; a client
                // opens at most this many streams on one connection.
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .http2_max_header_list_size(MAX_HEADER_LIST)
                .add_service(health_service)
                .add_service(reflection)
                .add_service(reflection_alpha)
                .add_service(
                    CatalogServiceServer::new(catalog)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                )
                .add_service(
                    DeliveryServiceServer::new(delivery)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                )
                .add_service(MetricsServiceServer::new(dora))
                .add_service(ProvisioningServiceServer::new(provisioning))
                .add_service(
                    TemplateServiceServer::new(templates)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                )
                .add_service(
                    EventLogServiceServer::new(events)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                )
                .add_service(
                    paved_proto::v1::plugin_service_server::PluginServiceServer::new(plugins)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                )
                .add_service(
                    SurveyServiceServer::new(surveys)
                        .max_decoding_message_size(MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                );
            let incoming = LimitedListener::new(listener, Limits::GRPC, "grpc").incoming();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let drained = server.serve_with_incoming_shutdown(incoming, stop.cancelled());
                // In-flight requests get DRAIN_TIMEOUT after the signal.
                tokio::select! {
                    r = drained => r.context("gRPC server failed"),
                    _ = async { stop.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
                        tracing::warn!("drain timeout: closing remaining connections");
                        Ok(())
                    }
                }
            });
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let outcome = done.context("task panicked").and_then(|r| r);
            if let Err(e) = outcome {
                tracing::error!(error = format!("{e:#}"), "component stopped with an error");
                // A failed projection stops itself (and reports unhealthy);
                // the rest of the process keeps serving until shutdown.
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) if !shutdown.is_cancelled() => Err(e),
            _ => Ok(()),
        }
    }
}

/// The API's services in `grpc.health.v1`.
const API_SERVICES: [&str; 7] = [
    "paved.v1.CatalogService",
    "paved.v1.ProvisioningService",
    "paved.v1.TemplateService",
    "paved.v1.SurveyService",
    "paved.v1.DeliveryService",
    "paved.v1.MetricsService",
    "paved.v1.EventLogService",
];
/// How often the API checks NATS and PostgreSQL for its health.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Keeps `grpc.health.v1` truthful: every API service and the overall
/// status (service "") are `SERVING` only while the stream answers and
/// PostgreSQL does; the overall status is also `NOT_SERVING` while a
/// projection of this process has halted (it needs an operator).
async fn watch_dependencies(
    health: tonic_health::server::HealthReporter,
    log: EventLog,
    pool: PgPool,
    projections: Vec<watch::Receiver<ProjectionStatus>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut last: Option<(bool, bool)> = None;
    loop {
        let limit = HEALTH_CHECK_EVERY;
        let nats = matches!(
            tokio::time::timeout(limit, log.last_sequence()).await,
            Ok(Ok(_))
        );
        let pg = matches!(
            tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&pool)).await,
            Ok(Ok(_))
        );
        let halted = projections
            .iter()
            .any(|s| matches!(s.borrow().health, Health::Failed(_)));
        let api = nats && pg;
        if last != Some((api, halted)) {
            if !api {
                tracing::warn!(
                    nats,
                    postgres = pg,
                    "dependencies unavailable: health NOT_SERVING"
                );
            }
            let status = |ok: bool| {
                if ok {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                }
            };
            for s in API_SERVICES {
                health.set_service_status(s, status(api)).await;
            }
            health.set_service_status("", status(api && !halted)).await;
            last = Some((api, halted));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(HEALTH_CHECK_EVERY) => {}
        }
    }
}

/// Mirrors a projection's health into `grpc.health.v1` as `paved.projection.<name>`.
async fn report_health(
    mut status: watch::Receiver<ProjectionStatus>,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (name, serving) = {
            let s = status.borrow_and_update();
            let serving = match s.health {
                Health::Running => ServingStatus::Serving,
                // Another process runs it; this one cannot vouch for it.
                Health::Standby => ServingStatus::Unknown,
                Health::Starting | Health::Stopped | Health::Failed(_) => ServingStatus::NotServing,
            };
            (s.name.clone(), serving)
        };
        health
            .set_service_status(format!("paved.projection.{name}"), serving)
            .await;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = status.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
