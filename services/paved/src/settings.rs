//! Server configuration: every knob is a flag and a `PAVED_*` variable.

use std::net::SocketAddr;
use std::time::Duration;

use paved_eventlog::LogConfig;

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Address the gRPC API listens on (port 0 picks a free port).
    #[arg(long, env = "PAVED_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// NATS server with JetStream.
    #[arg(long, env = "PAVED_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// PostgreSQL database for the read models; created if missing.
    #[arg(
        long,
        env = "PAVED_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/paved"
    )]
    pub database_url: String,

    /// JetStream stream holding the log.
    #[arg(long, env = "PAVED_STREAM", default_value = "PAVED")]
    pub stream: String,

    /// First token of every subject (`<prefix>.<context>.<type>.<id>`).
    #[arg(long, env = "PAVED_SUBJECT_PREFIX", default_value = "paved")]
    pub subject_prefix: String,

    /// Replicas of the stream when Paved creates it (3 in production).
    #[arg(long, env = "PAVED_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// Aggregate states kept in the write path's cache.
    #[arg(long, env = "PAVED_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: usize,

    /// PostgreSQL connections in the pool.
    #[arg(long, env = "PAVED_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// Shares the delivery read model is split into, each with a worker, a
    /// lease and a checkpoint of its own (by service): more than one when
    /// one worker cannot keep up. API and workers must agree; change it with
    /// the workers stopped (they continue where they stood).
    #[arg(long, env = "PAVED_DELIVERY_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(paved_eventlog::readmodel::MAX_PARTITIONS)))]
    pub delivery_partitions: u32,

    /// How long a query with `min_sequence` waits for its read model, in ms.
    #[arg(long, env = "PAVED_READ_WAIT_MS", default_value_t = 5000)]
    pub read_wait_ms: u64,

    /// Address of the Prometheus `/metrics` endpoint; empty to turn it off.
    #[arg(long, env = "PAVED_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,

    /// The survey secret (at least 16 bytes): keys the respondents'
    /// pseudonyms and seals their answers in the log. Whoever holds it can
    /// read every response and link it to a person: keep it outside the
    /// database. Unset (and no file): dev mode generates one into the
    /// database with a warning; otherwise Paved refuses to start.
    #[arg(long, env = "PAVED_SURVEY_SECRET", hide_env_values = true)]
    pub survey_secret: Option<String>,

    /// A file holding the survey secret (e.g. a mounted Kubernetes secret),
    /// instead of `PAVED_SURVEY_SECRET`; surrounding whitespace is ignored.
    #[arg(
        long,
        env = "PAVED_SURVEY_SECRET_FILE",
        conflicts_with = "survey_secret"
    )]
    pub survey_secret_file: Option<std::path::PathBuf>,

    /// Smallest group of survey responses whose figures and comments are shown (k >= 3).
    #[arg(long, env = "PAVED_SURVEY_MIN_GROUP", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(3..))]
    pub survey_min_group: u32,

    /// Ed25519 key signing the audit checkpoints: its 32-byte seed in hex.
    /// Unset: generated once and kept in the database (`api_secrets`).
    /// `paved audit keys` prints its public key and id.
    #[arg(long, env = "PAVED_AUDIT_SIGNING_KEY", hide_env_values = true)]
    pub audit_signing_key: Option<String>,

    /// Public keys (hex, comma-separated) whose checkpoints `paved audit
    /// verify` accepts besides the signing key's: keep retired keys here.
    #[arg(long, env = "PAVED_AUDIT_TRUSTED_KEYS", value_delimiter = ',')]
    pub audit_trusted_keys: Vec<String>,

    /// Milliseconds between audit checkpoints (0: the workers write none).
    #[arg(long, env = "PAVED_AUDIT_CHECKPOINT_MS", default_value_t = 30_000)]
    pub audit_checkpoint_ms: u64,

    /// YAML file naming each environment's Argo CD (url, token_env or
    /// token_file, app_name rule, timing). Unset: deployments requested
    /// through Paved fail with "no Argo CD is configured".
    #[arg(long, env = "PAVED_ARGOCD_CONFIG")]
    pub argocd_config: Option<std::path::PathBuf>,

    /// YAML file for provisioning: the GitOps repository the writer commits
    /// to (url, branch, credentials), the approval policy, quotas, namespace
    /// tiers, database sizes and rendering (docs/provisioning.md). Unset:
    /// the built-in policy and sizes, and no writer (requests stay requested).
    #[arg(long, env = "PAVED_PROVISIONING_CONFIG")]
    pub provisioning_config: Option<std::path::PathBuf>,

    /// YAML file for golden-path tasks: where `publish:git` puts new
    /// repositories (a local root of bare repositories, or a remote URL
    /// pattern with credentials), and the runner's timing (docs/templates.md).
    /// Unset: bare repositories under the temp dir's `paved-repositories`.
    #[arg(long, env = "PAVED_TEMPLATES_CONFIG")]
    pub templates_config: Option<std::path::PathBuf>,

    /// Networks (CIDR, comma-separated) plugin webhooks may reach although
    /// they are loopback, private or link-local, which are refused
    /// otherwise (e.g. `10.20.0.0/16` for an in-cluster receiver).
    #[arg(long, env = "PAVED_PLUGIN_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub plugin_webhook_allow: Vec<ipnet::IpNet>,

    /// Waits before each retry of a plugin webhook, in seconds
    /// (comma-separated; up to 20% jitter is added, a longer `Retry-After`
    /// wins); after the last one the message goes to the dead letters.
    /// The default is Standard Webhooks' schedule.
    #[arg(
        long,
        env = "PAVED_PLUGIN_WEBHOOK_RETRY_SECONDS",
        value_delimiter = ',',
        default_value = "5,300,1800,7200,18000,36000,36000"
    )]
    pub plugin_webhook_retry_seconds: Vec<f64>,

    /// Let plugin webhooks use `http://` (always allowed in dev mode).
    #[arg(long, env = "PAVED_PLUGIN_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub plugin_webhook_allow_http: bool,

    /// Connect and answer timeout of one plugin webhook post, in ms.
    #[arg(
        long,
        env = "PAVED_PLUGIN_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub plugin_webhook_timeout_ms: u64,

    /// Address of the webhook endpoints (`/webhooks/github`, `argocd`,
    /// `incidents`, `pagerduty`, `alertmanager`); empty to turn them off.
    #[arg(long, env = "PAVED_WEBHOOK_LISTEN", default_value = "127.0.0.1:9465")]
    pub webhook_listen: String,

    /// Secret of the GitHub webhook (`X-Hub-Signature-256`). Unset: the
    /// endpoint answers 503.
    #[arg(long, env = "PAVED_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,

    /// Bearer token Argo CD notifications send. Unset: the endpoint answers 503.
    #[arg(long, env = "PAVED_ARGOCD_WEBHOOK_TOKEN", hide_env_values = true)]
    pub argocd_webhook_token: Option<String>,

    /// Secret of the generic incident webhook (`X-Paved-Signature-256`).
    /// Unset: the endpoint answers 503.
    #[arg(long, env = "PAVED_INCIDENT_WEBHOOK_SECRET", hide_env_values = true)]
    pub incident_webhook_secret: Option<String>,

    /// Secrets of the PagerDuty v3 webhook subscription
    /// (`X-PagerDuty-Signature`), comma-separated: two while one is
    /// rotated. Unset: the endpoint answers 503.
    #[arg(
        long,
        env = "PAVED_PAGERDUTY_WEBHOOK_SECRETS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub pagerduty_webhook_secrets: Vec<String>,

    /// Bearer token Alertmanager's webhook receiver sends (its
    /// `http_config.authorization`). Unset: the endpoint answers 503.
    #[arg(long, env = "PAVED_ALERTMANAGER_WEBHOOK_TOKEN", hide_env_values = true)]
    pub alertmanager_webhook_token: Option<String>,

    /// DORA: an incident without an explicit link is attributed to the last
    /// successful production deployment of its services this many hours
    /// before it started.
    #[arg(long, env = "PAVED_DORA_ATTRIBUTION_HOURS", default_value_t = 24)]
    pub dora_attribution_hours: u32,

    /// Development mode: on first start (no tokens yet) create an admin token
    /// and print it once.
    #[arg(long, env = "PAVED_DEV", default_value_t = true, action = clap::ArgAction::Set)]
    pub dev: bool,
}

impl Settings {
    /// Connects to NATS: `PAVED_NATS_URL` may list several servers of a
    /// cluster, comma-separated (the client also learns the others from the
    /// one it reaches, and fails over among them).
    pub async fn connect_nats(&self) -> anyhow::Result<async_nats::Client> {
        use anyhow::Context as _;
        let urls: Vec<&str> = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        async_nats::ConnectOptions::new()
            .name("paved")
            .connect(urls.as_slice())
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.nats_url))
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.stream_replicas,
            ..LogConfig::default()
        }
    }

    pub fn dora_attribution(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.dora_attribution_hours))
    }

    /// How plugin webhooks are delivered (`http://` only in dev mode or when allowed).
    pub fn plugin_webhooks(&self) -> paved_workers::effects::plugin_webhooks::WebhookConfig {
        paved_workers::effects::plugin_webhooks::WebhookConfig {
            guard: paved_workers::effects::plugin_webhooks::Guard {
                allow: self.plugin_webhook_allow.clone(),
            },
            allow_http: self.dev || self.plugin_webhook_allow_http,
            retry: self
                .plugin_webhook_retry_seconds
                .iter()
                .map(|s| Duration::from_secs_f64(s.max(0.0)))
                .collect(),
            timeout: Duration::from_millis(self.plugin_webhook_timeout_ms),
            ..Default::default()
        }
    }

    pub fn read_wait(&self) -> Duration {
        Duration::from_millis(self.read_wait_ms)
    }
}

impl Default for Settings {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing no arguments yields the documented defaults (and the environment).
        Wrapper::parse_from(["paved"]).settings
    }
}
