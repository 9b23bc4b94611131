//! `paved.v1.PluginService`: the marketplace (aggregate `plugin`),
//! installations with their tokens (aggregate `installation`,
//! `plugin_tokens`), and a plugin's own view of the log: its events from
//! its durable cursor, and its acknowledgements moving the cursor.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use paved_domain::plugins::installation::{Grant, Installation, InstallationCommand};
use paved_domain::plugins::marketplace::{Delivery, Manifest, PluginCommand, PluginListing};
use paved_domain::validate::Violations;
use paved_domain::{Name, Scope};
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::codec::timestamp;
use paved_eventlog::readmodel::PLUGINS;
use paved_eventlog::{EventLog, Executor};
use paved_proto::v1 as pb;
use pb::plugin_service_server::PluginService;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::{self, Authenticator, Caller};
use crate::error;
use crate::events::{Filter, stream_range};
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::{begin, begin_any, execute, recorded};

type Reply<T> = Result<Response<T>, Status>;

/// How often a live subscription checks that its installation still stands.
pub const STANDING_CHECK: Duration = Duration::from_secs(1);
/// Records buffered per subscription before the reader waits for the plugin.
const BUFFER: usize = 512;
/// Longest marketplace search.
const MAX_QUERY: usize = 256;

#[derive(Clone)]
pub struct PluginApi {
    executor: Executor,
    log: EventLog,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
    quarantine_keys: TrustedKeys,
    shutdown: CancellationToken,
}

impl PluginApi {
    pub fn new(
        executor: Executor,
        log: EventLog,
        pool: PgPool,
        auth: Authenticator,
        freshness: Freshness,
        counters: CommandCounters,
    ) -> Self {
        Self {
            executor,
            log,
            pool,
            auth,
            freshness,
            counters,
            quarantine_keys: TrustedKeys::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Passes over quarantined messages in subscriptions, as the event log does.
    pub fn with_quarantine_keys(mut self, keys: TrustedKeys) -> Self {
        self.quarantine_keys = keys;
        self
    }

    /// Ends live subscriptions when `shutdown` fires, as the event log does.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    async fn installation(&self, name: &Name) -> Result<Installation, Status> {
        Ok(self
            .executor
            .state::<Installation>(name)
            .await
            .map_err(error::execute)?
            .state)
    }

    /// The installation as the read model has it (after the commit at `sequence`).
    async fn installation_info(
        &self,
        name: &str,
        sequence: u64,
    ) -> Result<pb::PluginInstallation, Status> {
        self.freshness.wait_for(PLUGINS, sequence).await?;
        installation_rows(&self.pool, Some(name), "")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| error::not_found("plugin installation", name))
    }
}

/// Scopes by their string form, each unknown one a violation at `field[i]`.
fn parse_scopes(v: &mut Violations, field: &str, values: &[String]) -> Vec<Scope> {
    let mut scopes = Vec::new();
    for (i, s) in values.iter().enumerate() {
        match Scope::parse(s) {
            Some(scope) => scopes.push(scope),
            None => v.push(
                format!("{field}[{i}]"),
                format!(
                    "unknown scope {:?} (known: {})",
                    s.chars().take(64).collect::<String>(),
                    Scope::all()
                        .iter()
                        .map(Scope::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    scopes
}

fn manifest_of(v: &mut Violations, m: Option<&pb::PluginManifest>) -> Option<Manifest> {
    let Some(m) = m else {
        v.push("manifest", "is required");
        return None;
    };
    let publisher = v.name("manifest.publisher", &m.publisher);
    let scopes = parse_scopes(v, "manifest.scopes", &m.scopes);
    let mut event_types = m.event_types.clone();
    event_types.sort();
    event_types.dedup();
    let mut scopes_sorted = scopes;
    scopes_sorted.sort();
    scopes_sorted.dedup();
    Some(Manifest {
        version: m.version.clone(),
        publisher: publisher?,
        title: m.title.clone(),
        description: m.description.clone(),
        homepage: m.homepage.clone(),
        scopes: scopes_sorted,
        event_types,
        delivery: if m.webhook_url.is_empty() {
            Delivery::Pull
        } else {
            Delivery::Webhook {
                url: m.webhook_url.clone(),
            }
        },
    })
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    plugin: String,
    version: String,
    publisher: String,
    title: String,
    description: String,
    homepage: String,
    scopes: Vec<String>,
    event_types: Vec<String>,
    webhook_url: String,
    status: String,
    status_reason: String,
    published_by: String,
    published_at: DateTime<Utc>,
}

impl From<VersionRow> for pb::PluginVersionInfo {
    fn from(r: VersionRow) -> Self {
        pb::PluginVersionInfo {
            plugin: r.plugin,
            manifest: Some(pb::PluginManifest {
                version: r.version,
                publisher: r.publisher,
                title: r.title,
                description: r.description,
                homepage: r.homepage,
                scopes: r.scopes,
                event_types: r.event_types,
                webhook_url: r.webhook_url,
            }),
            status: r.status,
            status_reason: r.status_reason,
            published_by: r.published_by,
            published_at: Some(timestamp(r.published_at)),
        }
    }
}

/// Newest semver first (a release above its pre-releases).
const VERSION_ORDER: &str =
    "major DESC, minor DESC, patch DESC, (prerelease = '') DESC, prerelease DESC";

#[derive(sqlx::FromRow)]
struct InstallationRow {
    name: String,
    plugin: String,
    version: String,
    scopes: Vec<String>,
    team: String,
    cursor: i64,
    status: String,
    uninstalled_reason: String,
    installed_by: String,
    installed_at: DateTime<Utc>,
    webhook_url: String,
    disabled_reason: String,
    failing_sequence: i64,
    failing_attempts: i32,
    retry_at: Option<DateTime<Utc>>,
}

async fn installation_rows(
    pool: &PgPool,
    name: Option<&str>,
    plugin: &str,
) -> Result<Vec<pb::PluginInstallation>, Status> {
    let rows: Vec<InstallationRow> = sqlx::query_as(
        "SELECT name, plugin, version, scopes, team, cursor, status, uninstalled_reason,
                installed_by, installed_at, webhook_url, disabled_reason, failing_sequence,
                failing_attempts, retry_at
           FROM plugin_installations
          WHERE ($1::text IS NULL OR name = $1) AND ($2 = '' OR plugin = $2)
          ORDER BY name",
    )
    .bind(name)
    .bind(plugin)
    .fetch_all(pool)
    .await
    .map_err(error::database)?;
    Ok(rows
        .into_iter()
        .map(|r| pb::PluginInstallation {
            name: r.name,
            plugin: r.plugin,
            version: r.version,
            scopes: r.scopes,
            team: r.team,
            cursor: r.cursor as u64,
            status: r.status,
            uninstalled_reason: r.uninstalled_reason,
            installed_by: r.installed_by,
            installed_at: Some(timestamp(r.installed_at)),
            webhook_url: r.webhook_url,
            disabled_reason: r.disabled_reason,
            failing_sequence: r.failing_sequence as u64,
            failing_attempts: r.failing_attempts as u32,
            retry_at: r.retry_at.map(timestamp),
        })
        .collect())
}

type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribePluginEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PluginService for PluginApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "PublishPlugin"),
        err(level = "info")
    )]
    async fn publish_plugin(
        &self,
        request: Request<pb::PublishPluginRequest>,
    ) -> Reply<pb::PublishPluginResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("plugin", &r.plugin);
        let manifest = manifest_of(&mut v, r.manifest.as_ref());
        let done = execute::<PluginListing>(
            &self.executor,
            &self.counters,
            v,
            id,
            manifest.map(PluginCommand::Publish),
            &meta,
        )
        .await?;
        Ok(Response::new(recorded(done)))
    }

    async fn deprecate_plugin_version(
        &self,
        request: Request<pb::DeprecatePluginVersionRequest>,
    ) -> Reply<pb::DeprecatePluginVersionResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("plugin", &r.plugin);
        let command = PluginCommand::Deprecate {
            version: r.version,
            reason: r.reason,
        };
        let done =
            execute::<PluginListing>(&self.executor, &self.counters, v, id, Some(command), &meta)
                .await?;
        Ok(Response::new(recorded(done)))
    }

    async fn yank_plugin_version(
        &self,
        request: Request<pb::YankPluginVersionRequest>,
    ) -> Reply<pb::YankPluginVersionResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("plugin", &r.plugin);
        let command = PluginCommand::Yank {
            version: r.version,
            reason: r.reason,
        };
        let done =
            execute::<PluginListing>(&self.executor, &self.counters, v, id, Some(command), &meta)
                .await?;
        Ok(Response::new(recorded(done)))
    }

    async fn list_plugins(
        &self,
        request: Request<pb::ListPluginsRequest>,
    ) -> Reply<pb::ListPluginsResponse> {
        let r = request.into_inner();
        let mut v = Violations::new();
        v.line("query", &r.query, MAX_QUERY);
        if !r.publisher.is_empty() {
            v.name("publisher", &r.publisher);
        }
        if !v.is_empty() {
            return Err(error::invalid(v.into_vec()));
        }
        self.freshness.wait_for(PLUGINS, r.min_sequence).await?;
        let rows: Vec<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT ON (plugin) plugin, version, publisher, title, description, homepage,
                    scopes, event_types, webhook_url, status, status_reason, published_by,
                    published_at
               FROM plugin_versions
              WHERE status <> 'yanked'
                AND ($1 = '' OR to_tsvector('simple', plugin || ' ' || title || ' ' || description)
                                @@ plainto_tsquery('simple', $1))
                AND ($2 = '' OR publisher = $2)
              ORDER BY plugin, {VERSION_ORDER}"
        )))
        .bind(&r.query)
        .bind(&r.publisher)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        Ok(Response::new(pb::ListPluginsResponse {
            plugins: rows.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_plugin(
        &self,
        request: Request<pb::GetPluginRequest>,
    ) -> Reply<pb::GetPluginResponse> {
        let r = request.into_inner();
        if Name::parse(&r.plugin).is_err() {
            return Err(error::invalid_field("plugin", "is not a plugin name"));
        }
        self.freshness.wait_for(PLUGINS, r.min_sequence).await?;
        let rows: Vec<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT plugin, version, publisher, title, description, homepage, scopes, event_types,
                    webhook_url, status, status_reason, published_by, published_at
               FROM plugin_versions WHERE plugin = $1 ORDER BY {VERSION_ORDER}"
        )))
        .bind(&r.plugin)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        if rows.is_empty() {
            return Err(error::not_found("plugin", &r.plugin));
        }
        Ok(Response::new(pb::GetPluginResponse {
            versions: rows.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "InstallPlugin"),
        err(level = "info")
    )]
    async fn install_plugin(
        &self,
        request: Request<pb::InstallPluginRequest>,
    ) -> Reply<pb::InstallPluginResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("installation", &r.installation);
        let plugin = v.name("plugin", &r.plugin);
        if r.version.is_empty() {
            v.push("version", "is required (the version to pin)");
        }
        let scopes = parse_scopes(&mut v, "scopes", &r.scopes);
        let team = v.optional_name("team", &r.team);
        let command = plugin.map(|plugin| {
            InstallationCommand::Install(Grant {
                plugin,
                version: r.version.clone(),
                scopes,
                team,
            })
        });
        let done = execute::<Installation>(
            &self.executor,
            &self.counters,
            v,
            id.clone(),
            command,
            &meta,
        )
        .await?;
        let Some(id) = id else {
            return Err(error::invalid_field("installation", "is required"));
        };
        if done.events == 0 && !done.replayed {
            return Err(Status::already_exists(format!(
                "plugin installation {id} is installed already: RotatePluginToken issues a new token"
            )));
        }
        // The token works once the read model has the installation: wait
        // for it, so the answer's token works at once.
        let installation = self.installation_info(id.as_str(), done.sequence).await?;
        if installation.status != "installed" {
            return Err(Status::failed_precondition(format!(
                "plugin installation {id} was uninstalled"
            )));
        }
        let key = format!("{id}/install/{}", meta.command_id);
        let token = auth::issue_plugin_token(&self.pool, &id, &key)
            .await
            .map_err(error::database)?;
        let webhook_secret = auth::issue_webhook_secret(&self.pool, &id, &key)
            .await
            .map_err(error::database)?;
        Ok(Response::new(pb::InstallPluginResponse {
            sequence: done.sequence,
            installation: Some(installation),
            token,
            webhook_secret,
        }))
    }

    async fn upgrade_installation(
        &self,
        request: Request<pb::UpgradeInstallationRequest>,
    ) -> Reply<pb::UpgradeInstallationResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("installation", &r.installation);
        if r.version.is_empty() {
            v.push("version", "is required (the version to pin)");
        }
        let scopes = parse_scopes(&mut v, "scopes", &r.scopes);
        let command = InstallationCommand::Upgrade {
            version: r.version.clone(),
            scopes: (!r.scopes.is_empty()).then_some(scopes),
        };
        let done =
            execute::<Installation>(&self.executor, &self.counters, v, id, Some(command), &meta)
                .await?;
        let installation = self
            .installation_info(&r.installation, done.sequence)
            .await?;
        Ok(Response::new(pb::UpgradeInstallationResponse {
            sequence: done.sequence,
            installation: Some(installation),
        }))
    }

    async fn rotate_plugin_token(
        &self,
        request: Request<pb::RotatePluginTokenRequest>,
    ) -> Reply<pb::RotatePluginTokenResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("installation", &r.installation);
        let overlap = Duration::from_secs(u64::from(r.overlap_seconds));
        // Who may, and that it stands, is the installation's to say; the
        // rotation is in the log before any token changes.
        execute::<Installation>(
            &self.executor,
            &self.counters,
            v,
            id.clone(),
            Some(InstallationCommand::RotateToken {
                overlap_seconds: r.overlap_seconds,
            }),
            &meta,
        )
        .await?;
        let Some(id) = id else {
            return Err(error::invalid_field("installation", "is required"));
        };
        let key = format!("{id}/rotate/{}", meta.command_id);
        let (token, until) = auth::rotate_plugin_token(&self.pool, &id, &key, overlap)
            .await
            .map_err(error::database)?;
        let webhook_secret = auth::rotate_webhook_secret(&self.pool, &id, &key, until)
            .await
            .map_err(error::database)?;
        Ok(Response::new(pb::RotatePluginTokenResponse {
            token,
            previous_valid_until: Some(timestamp(until)),
            webhook_secret,
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "UninstallPlugin"),
        err(level = "info")
    )]
    async fn uninstall_plugin(
        &self,
        request: Request<pb::UninstallPluginRequest>,
    ) -> Reply<pb::UninstallPluginResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("installation", &r.installation);
        let command = InstallationCommand::Uninstall { reason: r.reason };
        let done = execute::<Installation>(
            &self.executor,
            &self.counters,
            v,
            id.clone(),
            Some(command),
            &meta,
        )
        .await?;
        // Its tokens stop when the read model has the uninstall (token
        // lookups join it); revoking them too keeps them stopped whatever
        // the read model does later (a rebuild in progress, say).
        self.freshness.wait_for(PLUGINS, done.sequence).await?;
        if let Some(id) = &id {
            auth::revoke_plugin_tokens(&self.pool, id)
                .await
                .map_err(error::database)?;
        }
        Ok(Response::new(recorded(done)))
    }

    async fn list_installations(
        &self,
        request: Request<pb::ListInstallationsRequest>,
    ) -> Reply<pb::ListInstallationsResponse> {
        let r = request.into_inner();
        if !r.plugin.is_empty() && Name::parse(&r.plugin).is_err() {
            return Err(error::invalid_field("plugin", "is not a plugin name"));
        }
        self.freshness.wait_for(PLUGINS, r.min_sequence).await?;
        Ok(Response::new(pb::ListInstallationsResponse {
            installations: installation_rows(&self.pool, None, &r.plugin).await?,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Reply<pb::ListDeadLettersResponse> {
        #[derive(sqlx::FromRow)]
        struct Row {
            installation: String,
            sequence: i64,
            attempts: i32,
            status: i32,
            error: String,
            dead_at: DateTime<Utc>,
            replay_pending: bool,
            delivered: bool,
        }
        let r = request.into_inner();
        if Name::parse(&r.installation).is_err() {
            return Err(error::invalid_field(
                "installation",
                "is not an installation name",
            ));
        }
        self.freshness.wait_for(PLUGINS, r.min_sequence).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT installation, sequence, attempts, status, error, dead_at, replay_pending,
                    delivered
               FROM plugin_dead_letters WHERE installation = $1 ORDER BY sequence",
        )
        .bind(&r.installation)
        .fetch_all(&self.pool)
        .await
        .map_err(error::database)?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: rows
                .into_iter()
                .map(|d| pb::DeadLetter {
                    installation: d.installation,
                    sequence: d.sequence as u64,
                    attempts: d.attempts as u32,
                    status: d.status as u32,
                    error: d.error,
                    dead_at: Some(timestamp(d.dead_at)),
                    replay_pending: d.replay_pending,
                    delivered: d.delivered,
                })
                .collect(),
        }))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Reply<pb::ReplayDeadLetterResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("installation", &r.installation);
        let command = InstallationCommand::Replay {
            sequence: r.sequence,
        };
        let done =
            execute::<Installation>(&self.executor, &self.counters, v, id, Some(command), &meta)
                .await?;
        Ok(Response::new(recorded(done)))
    }

    type SubscribePluginEventsStream = SubscribeStream;

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "SubscribePluginEvents"),
        err(level = "info")
    )]
    async fn subscribe_plugin_events(
        &self,
        request: Request<pb::SubscribePluginEventsRequest>,
    ) -> Reply<SubscribeStream> {
        let caller = self.auth.caller(&request).await?;
        let grant = own_installation(&caller)?;
        let r = request.into_inner();
        let state = self.installation(grant).await?;
        let Some(pinned) = &state.grant else {
            return Err(error::not_found("plugin installation", grant.as_str()));
        };
        let listing = self
            .executor
            .state::<PluginListing>(&pinned.plugin)
            .await
            .map_err(error::execute)?
            .state;
        let event_types = listing
            .version(&pinned.version)
            .map(|v| v.manifest.event_types.clone())
            .unwrap_or_default();
        // A new installation starts after its own installation.
        let start_after = if state.cursor > 0 {
            state.cursor
        } else {
            sqlx::query_scalar::<_, i64>(
                "SELECT installed_sequence FROM plugin_installations WHERE name = $1",
            )
            .bind(grant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(error::database)?
            .unwrap_or(0) as u64
        };
        let mut filter = Filter::parse(&self.log, None)?;
        filter.omit_json = r.omit_json;
        filter.restrict_to(&caller);
        filter.narrow_subject(&self.log);
        filter.only_types(event_types);
        let (tx, rx) = mpsc::channel(BUFFER);
        let log = self.log.clone();
        let keys = self.quarantine_keys.clone();
        let pool = self.pool.clone();
        let name = grant.to_string();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let deliver = DeliverPolicy::ByStartSequence {
                start_sequence: start_after + 1,
            };
            let read = stream_range(
                &log,
                &keys,
                deliver,
                &filter,
                u64::MAX,
                None,
                None,
                usize::MAX,
                &tx,
            );
            let standing = async {
                loop {
                    tokio::time::sleep(STANDING_CHECK).await;
                    let status: Result<Option<String>, _> = sqlx::query_scalar(
                        "SELECT status FROM plugin_installations WHERE name = $1",
                    )
                    .bind(&name)
                    .fetch_optional(&pool)
                    .await;
                    if let Ok(status) = status
                        && status.as_deref() != Some("installed")
                    {
                        return Status::permission_denied(format!(
                            "plugin installation {name} was uninstalled"
                        ));
                    }
                }
            };
            let ended = tokio::select! {
                r = read => r.err(),
                status = standing => Some(status),
                _ = shutdown.cancelled() => Some(crate::events::shutting_down()),
            };
            if let Some(status) = ended {
                tx.send(Err(status)).await.ok();
            }
        });
        let stream = ReceiverStream::new(rx).map(|r| {
            r.map(|record| pb::SubscribePluginEventsResponse {
                record: Some(record),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge_plugin_events(
        &self,
        mut request: Request<pb::AcknowledgePluginEventsRequest>,
    ) -> Reply<pb::AcknowledgePluginEventsResponse> {
        let caller = self.auth.caller(&request).await?;
        let id = own_installation(&caller)?.clone();
        let sequence = request.get_ref().sequence;
        if request.get_ref().request_id.is_empty() {
            // Request ids are the stream's message ids, one namespace for
            // every caller: the installation keeps two plugins acknowledging
            // the same sequence apart.
            request.get_mut().request_id = format!("ack-{id}-{sequence}");
        }
        let (meta, _, mut v) = begin_any(&self.auth, request).await?;
        let last = self
            .log
            .last_sequence()
            .await
            .map_err(|e| error::log_unavailable(&e))?;
        if sequence == 0 {
            v.push("sequence", "is required (the last sequence processed)");
        } else if sequence > last {
            v.push(
                "sequence",
                format!("{sequence} is past the end of the log ({last})"),
            );
        }
        execute::<Installation>(
            &self.executor,
            &self.counters,
            v,
            Some(id.clone()),
            Some(InstallationCommand::Acknowledge { sequence }),
            &meta,
        )
        .await?;
        let state = self.installation(&id).await?;
        Ok(Response::new(pb::AcknowledgePluginEventsResponse {
            cursor: state.cursor,
            log_sequence: last,
        }))
    }
}

/// The installation a plugin token belongs to.
fn own_installation(caller: &Caller) -> Result<&Name, Status> {
    caller
        .plugin
        .as_ref()
        .map(|g| &g.installation)
        .ok_or_else(|| Status::permission_denied("this RPC takes a plugin installation's token"))
}
