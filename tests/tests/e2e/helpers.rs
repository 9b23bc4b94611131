//! `spawn_app()`: a whole Paved per test, isolated, torn down on drop.

use std::future::Future;
use std::time::Duration;

use paved::{Application, Roles, Settings};
use paved_domain::Principal;
use paved_eventlog::{EventLog, LogConfig};
use paved_sdk::Client;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The machine's NATS (2.9, Debian's).
pub const MACHINE_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The NATS server this test binary runs against: the machine's for `e2e`;
/// for `e2e_current`, a current server (≥ 2.12, `sync_interval: always`, as
/// production runs) of this test process's own (see [`crate::private`]).
pub fn nats_url() -> String {
    if crate::CURRENT_NATS {
        crate::private::current_nats_url()
    } else {
        MACHINE_NATS_URL.to_owned()
    }
}
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestApp {
    pub id: String,
    pub roles: Roles,
    pub url: String,
    /// `host:port` of the `/metrics` endpoint.
    pub metrics_addr: std::net::SocketAddr,
    /// `host:port` of the webhook endpoints.
    pub webhook_addr: Option<std::net::SocketAddr>,
    pub admin_token: String,
    pub client: Client,
    pub pool: PgPool,
    pub log: EventLog,
    pub settings: Settings,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for an isolated instance: its own stream, prefix and database.
pub fn isolated_settings() -> (String, Settings) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        nats_url: nats_url(),
        database_url: format!("{PG_URL}/paved_test_{id}"),
        stream: format!("TEST_{}", id.to_uppercase()),
        subject_prefix: format!("t{id}"),
        db_pool_size: 8,
        metrics_listen: "127.0.0.1:0".into(),
        webhook_listen: "127.0.0.1:0".into(),
        // Kept outside the database, as in production.
        survey_secret: Some(format!("test-survey-secret-{id}")),
        dev: true,
        ..Settings::default()
    };
    (id, s)
}

/// Paved with the API and the workers.
pub async fn spawn_app() -> TestApp {
    spawn_with(Roles::ALL).await
}

/// Paved with only some of its halves (tests drive workers themselves).
pub async fn spawn_with(roles: Roles) -> TestApp {
    spawn_configured(roles, |_| {}).await
}

/// Logs to the test's output when `RUST_LOG` is set (`RUST_LOG=warn cargo
/// nextest run --no-capture …`), once per test binary.
fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init()
                .ok();
        }
    });
}

/// Paved with settings changed by `configure`.
pub async fn spawn_configured(roles: Roles, configure: impl FnOnce(&mut Settings)) -> TestApp {
    logs();
    let (id, mut settings) = isolated_settings();
    configure(&mut settings);
    let app = Application::build(settings.clone(), roles)
        .await
        .expect("build paved");
    let admin_token = app.admin_token().expect("dev mode admin token").to_owned();
    let pool = app.pool().clone();
    let log = app.log().clone();
    let url = format!("http://127.0.0.1:{}", app.port());
    let metrics_addr = app.metrics_addr().expect("metrics endpoint");
    let webhook_addr = app.webhook_addr();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = if roles.api {
        Client::connect(url.clone(), &admin_token)
            .await
            .expect("connect the SDK")
    } else {
        // A client that is never used to call: build it lazily.
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect_lazy();
        Client::with_channel(channel, &admin_token).unwrap()
    };
    TestApp {
        id,
        roles,
        url,
        metrics_addr,
        webhook_addr,
        admin_token,
        client,
        pool,
        log,
        settings,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    /// A client authenticated as `principal` (its token created for the test).
    pub async fn client_as(&self, principal: Principal) -> Client {
        let token = paved_api::auth::create_token(&self.pool, &principal)
            .await
            .unwrap();
        Client::connect(self.url.clone(), &token).await.unwrap()
    }

    /// `GET /metrics` as Prometheus asks for it (OpenMetrics, with exemplars).
    pub async fn scrape(&self) -> String {
        self.scrape_as(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ))
        .await
    }

    /// `GET /metrics` with `accept` (plain HTTP/1.0 over a socket): the
    /// response, headers included.
    pub async fn scrape_as(&self, accept: Option<&str>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .unwrap();
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: paved\r\n{accept}\r\n").as_bytes())
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        body
    }

    /// The stream's last sequence: what "nothing was appended" is checked against.
    pub async fn last_sequence(&self) -> u64 {
        self.log.last_sequence().await.unwrap()
    }

    /// Another handle on the same log (a second API replica, a worker).
    pub async fn open_log(&self) -> EventLog {
        let nats = async_nats::connect(nats_url()).await.unwrap();
        EventLog::open(nats, self.log_config()).await.unwrap()
    }

    pub fn log_config(&self) -> LogConfig {
        self.settings.log_config()
    }

    /// Kills the app as a crash would (no draining), then starts it again
    /// on the same stream and database.
    pub async fn crash_and_restart(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
        let mut settings = self.settings.clone();
        settings.dev = false;
        let app = Application::build(settings, self.roles)
            .await
            .expect("restart paved");
        self.url = format!("http://127.0.0.1:{}", app.port());
        self.metrics_addr = app.metrics_addr().expect("metrics endpoint");
        self.webhook_addr = app.webhook_addr();
        self.shutdown = CancellationToken::new();
        self.handle = Some(tokio::spawn(app.run_until_stopped(self.shutdown.clone())));
        self.client = Client::connect(self.url.clone(), &self.admin_token)
            .await
            .expect("reconnect the SDK");
    }

    /// Stops the app and waits until it has drained.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        // Best effort: remove this test's stream and database (FORCE ends the
        // pool's connections, which belong to the test's runtime).
        let stream = self.settings.stream.clone();
        let db = format!("paved_test_{}", self.id);
        // Its own thread and runtime: this runtime may be the one dropping us.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(remove(&stream, &db))
        })
        .join();
    }
}

/// Best effort: removes a test's stream and database (FORCE ends whatever
/// connections are left).
pub async fn remove(stream: &str, db: &str) {
    if let Ok(nats) = async_nats::connect(nats_url()).await {
        let js = async_nats::jetstream::new(nats);
        js.delete_stream(stream).await.ok();
    }
    remove_database(db).await;
}

/// Best effort: drops a test's database.
pub async fn remove_database(db: &str) {
    if let Ok(admin) = PgPool::connect(&format!("{PG_URL}/postgres")).await {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .ok();
    }
}

/// Waits until `check` returns `Some`, polling, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A team and a service spec, the smallest valid inputs.
pub mod fixtures {
    use paved_sdk::pb;

    pub fn team(name: &str) -> pb::CreateTeamRequest {
        pb::CreateTeamRequest {
            name: name.into(),
            profile: Some(pb::TeamProfile {
                display_name: name.to_uppercase(),
                email: format!("{name}@example.com"),
                chat_channel: format!("#{name}"),
            }),
            ..Default::default()
        }
    }

    pub fn spec() -> pb::ServiceSpec {
        pb::ServiceSpec {
            r#type: pb::ServiceType::Service.into(),
            lifecycle: pb::Lifecycle::Production.into(),
            ..Default::default()
        }
    }

    pub fn service(name: &str, owner: &str) -> pb::RegisterServiceRequest {
        pb::RegisterServiceRequest {
            name: name.into(),
            owner: owner.into(),
            spec: Some(spec()),
            ..Default::default()
        }
    }
}

/// The metric names the Grafana dashboard `deploy/grafana/<file>` queries.
pub fn dashboard_series(file: &str) -> Vec<String> {
    let path = format!("{}/../deploy/grafana/{file}", env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.extend(target["expr"].as_str().map(str::to_owned));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        exprs.extend(variable["query"]["query"].as_str().map(str::to_owned));
    }
    let mut names = Vec::new();
    for expr in exprs {
        for (i, _) in expr.match_indices("paved_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Does the exposition `metrics` have a sample of `name`?
pub fn has_series(metrics: &str, name: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
}
