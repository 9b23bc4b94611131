//! Plugin webhook delivery (an effect, DESIGN.md invariant 5): for every
//! installation whose pinned version posts to a webhook, the events its
//! grant and manifest select are posted in log order, one request per
//! event, signed as Standard Webhooks specifies (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`; during
//! a secret's rotation both signatures). What happened is recorded on the
//! installation through the write path as `worker:plugin-webhooks`:
//!
//! - a delivered message moves the installation's cursor (one
//!   acknowledgement per pass, covering everything delivered in it);
//! - a failed attempt (no answer, a status other than 2xx) is recorded
//!   with its next try, on the retry schedule with jitter, or later when
//!   the answer's `Retry-After` (seconds or an HTTP date) says so; later
//!   messages wait (order holds);
//! - after the last attempt the message goes to the dead letters and the
//!   cursor moves past it; an admin can ask for it again;
//! - `410 Gone` disables the endpoint until the installation is upgraded.
//!
//! The webhook id is `<installation>-<sequence>-<index>`, the same on every
//! attempt and replay, so a receiver can drop what it already has: a crash
//! between a post and its record sends that post again (at least once).
//! Installations are served concurrently, so a slow plugin slows only
//! itself. One deliverer per database (a lease); other replicas stand by.

pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::Utc;
use futures::StreamExt;
use paved_domain::plugins::Selection;
use paved_domain::plugins::installation::{
    Attempt, Installation, InstallationCommand, WEBHOOK_WORKER,
};
use paved_domain::plugins::marketplace::{Delivery, PluginListing};
use paved_domain::{Event, Name, Principal};
use paved_eventlog::codec;
use paved_eventlog::{CommandMeta, EventLog, ExecuteError, Executor, StoredCommit};
use rand::Rng;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
pub use guard::Guard;

/// The lease key: one deliverer per database.
pub const LEASE: &str = "paved.plugin-webhooks";
/// Installations served at once.
const CONCURRENCY: usize = 32;
/// Messages read per installation per pass.
const BATCH: usize = 256;
/// Bytes of an answer's body kept (in the failure's record).
const MAX_ANSWER: usize = 1024;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How deliveries are made (`PAVED_PLUGIN_WEBHOOK_*`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Networks webhooks may reach although private or loopback.
    pub guard: Guard,
    /// `http://` URLs too (dev mode only).
    pub allow_http: bool,
    /// The wait before each retry: the nth failure waits the nth entry
    /// (with up to 20% jitter); after the last, the message is dead.
    pub retry: Vec<Duration>,
    /// Connect and answer timeout of one post.
    pub timeout: Duration,
    /// How often the deliverer looks for work.
    pub scan: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            guard: Guard::default(),
            allow_http: false,
            retry: default_retry(),
            timeout: Duration::from_secs(10),
            scan: Duration::from_millis(200),
        }
    }
}

/// Standard Webhooks' suggested schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub fn default_retry() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// What one post came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 410 Gone.
    Gone(Attempt),
    Failed {
        attempt: Attempt,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Transient {
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("log: {0}")]
    Log(String),
}

#[derive(Clone)]
pub struct WebhookDeliverer {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Executor,
    pool: PgPool,
    log: EventLog,
    http: reqwest::Client,
    config: WebhookConfig,
}

#[derive(sqlx::FromRow)]
struct Due {
    name: String,
    installed_sequence: i64,
    cursor: i64,
    /// Not waiting for a retry's time.
    due: bool,
    /// A dead letter waits for its replay.
    replay: bool,
}

impl WebhookDeliverer {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        log: EventLog,
        config: WebhookConfig,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .dns_resolver(Arc::new(guard::GuardedResolver {
                guard: Arc::new(config.guard.clone()),
            }))
            .user_agent(concat!("paved-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                executor,
                pool,
                log,
                http,
                config,
            }),
        })
    }

    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let Some(mut lease) = Lease::acquire(&self.inner.pool, LEASE, &shutdown).await else {
                return;
            };
            tracing::info!("plugin webhook deliverer running");
            loop {
                if let Err(e) = lease.check_if_due().await {
                    tracing::warn!(error = %e, "plugin webhook deliverer lost its lease; standing by");
                    break;
                }
                if let Err(e) = self.pass(&shutdown).await {
                    tracing::warn!(error = %e, "plugin webhook pass interrupted; trying again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.inner.config.scan) => {}
                }
            }
        }
    }

    /// One pass over every webhook installation with something to do.
    /// Without any webhook installation it asks the log nothing.
    pub async fn pass(&self, shutdown: &CancellationToken) -> Result<(), Transient> {
        let me = &self.inner;
        let installed: Vec<Due> = sqlx::query_as(
            "SELECT i.name, i.installed_sequence, i.cursor,
                    (i.retry_at IS NULL OR i.retry_at <= now()) AS due,
                    EXISTS (SELECT 1 FROM plugin_dead_letters d
                             WHERE d.installation = i.name AND d.replay_pending) AS replay
               FROM plugin_installations i
              WHERE i.status = 'installed' AND i.webhook_url <> '' AND i.disabled_reason = ''
              ORDER BY i.name",
        )
        .fetch_all(&me.pool)
        .await?;
        if installed.is_empty() {
            return Ok(());
        }
        let last = me
            .log
            .last_sequence()
            .await
            .map_err(|e| Transient::Log(e.to_string()))?;
        let due = installed
            .into_iter()
            .filter(|d| d.replay || (d.due && (d.cursor.max(d.installed_sequence) as u64) < last));
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |due| async move {
                if shutdown.is_cancelled() {
                    return;
                }
                let Ok(name) = Name::parse(&due.name) else { return };
                if let Err(e) = self
                    .installation(&name, due.installed_sequence as u64, last)
                    .await
                {
                    tracing::warn!(installation = %name, error = %e, "webhook delivery interrupted");
                }
            })
            .await;
        Ok(())
    }

    /// Serves one installation: its replays, then its queue up to `last`.
    async fn installation(&self, name: &Name, installed: u64, last: u64) -> Result<(), Transient> {
        let me = &self.inner;
        let state = me.executor.state::<Installation>(name).await?.state;
        let Some(grant) = &state.grant else {
            return Ok(());
        };
        if state.uninstalled.is_some() || state.disabled.is_some() {
            return Ok(());
        }
        let listing = me
            .executor
            .state::<PluginListing>(&grant.plugin)
            .await?
            .state;
        let Some(version) = listing.version(&grant.version) else {
            return Ok(());
        };
        let Delivery::Webhook { url } = &version.manifest.delivery else {
            return Ok(());
        };
        let Ok(url) = reqwest::Url::parse(url) else {
            return Ok(());
        };
        let secrets = self.secrets(name).await?;
        if secrets.is_empty() {
            tracing::warn!(installation = %name, "no webhook secret: nothing is sent");
            return Ok(());
        }
        let select = Selection {
            scopes: grant.scopes.clone(),
            event_types: version.manifest.event_types.clone(),
        };
        let webhook = Webhook {
            installation: name,
            url: &url,
            secrets: &secrets,
        };
        for (sequence, dead) in state.dead_letters.iter().filter(|(_, d)| d.replay_pending) {
            let outcome = match self.read_one(*sequence).await? {
                Some(stored) => self.post_commit(&webhook, &stored, &select).await,
                None => Outcome::Delivered,
            };
            let (attempt, delivered) = match outcome {
                Outcome::Delivered => (
                    Attempt {
                        sequence: *sequence,
                        status: 200,
                        error: String::new(),
                    },
                    true,
                ),
                Outcome::Gone(a) | Outcome::Failed { attempt: a, .. } => (a, false),
            };
            self.record(
                name,
                format!("replayed/{sequence}/{}", dead.replays),
                InstallationCommand::Replayed { attempt, delivered },
            )
            .await?;
        }
        if state
            .failing
            .as_ref()
            .is_some_and(|f| f.retry_at > Utc::now())
        {
            return Ok(());
        }
        let start = state.cursor.max(installed) + 1;
        if start > last {
            return Ok(());
        }
        // One context granted: read only its subjects (the rest of the log
        // is nothing to this plugin); several: the whole log, filtered here.
        let contexts = select.contexts();
        let prefix = &me.log.config().subject_prefix;
        let filter = match contexts[..] {
            [] => return self.delivered(name, &state, last).await,
            [one] => format!("{prefix}.{one}.>"),
            _ => format!("{prefix}.>"),
        };
        let mut read = me
            .log
            .ordered(
                &filter,
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
            )
            .await
            .map_err(|e| Transient::Log(e.to_string()))?;
        let mut through = state.cursor;
        if read.pending == 0 {
            // Nothing on its subjects up to the end of the log.
            return self.delivered(name, &state, last).await;
        }
        for _ in 0..BATCH {
            let Some(m) = read.messages.next().await else {
                break;
            };
            let m = m.map_err(|e| Transient::Log(e.to_string()))?;
            let info = m.info().map_err(|e| Transient::Log(e.to_string()))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > last {
                break;
            }
            // A message that does not decode is the projections' business
            // (they stop on it); a plugin is not sent what cannot be read.
            let Ok(commit) = codec::decode_commit(&m.payload) else {
                through = sequence;
                if pending == 0 {
                    through = through.max(last);
                }
                if pending == 0 || sequence >= last {
                    break;
                }
                continue;
            };
            let stored = StoredCommit { sequence, commit };
            match self.post_commit(&webhook, &stored, &select).await {
                Outcome::Delivered => through = sequence,
                Outcome::Gone(attempt) => {
                    self.delivered(name, &state, through).await?;
                    self.record(
                        name,
                        format!("disabled/{sequence}"),
                        InstallationCommand::Disable { attempt },
                    )
                    .await?;
                    return Ok(());
                }
                Outcome::Failed {
                    attempt,
                    retry_after,
                } => {
                    self.delivered(name, &state, through).await?;
                    let number = match &state.failing {
                        Some(f) if f.sequence == sequence => f.attempts + 1,
                        _ => 1,
                    };
                    let retry_at = self
                        .wait_before(number, retry_after)
                        .map(|w| Utc::now() + chrono::Duration::from_std(w).unwrap_or_default());
                    let id = match retry_at {
                        Some(_) => format!("failed/{sequence}/{number}"),
                        None => format!("dead/{sequence}"),
                    };
                    self.record(name, id, InstallationCommand::Failed { attempt, retry_at })
                        .await?;
                    return Ok(());
                }
            }
            if sequence >= last {
                break;
            }
            if pending == 0 {
                // Nothing more on its subjects: everything up to `last` is done.
                through = through.max(last);
                break;
            }
        }
        self.delivered(name, &state, through).await
    }

    /// The wait before attempt `number + 1`; `None`: that was the last.
    fn wait_before(&self, number: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.inner.config.retry.get(number as usize - 1)?;
        let jitter = base.mul_f64(rand::rng().random_range(0.0..0.2));
        let wait = base + jitter;
        Some(match retry_after {
            Some(r) => wait.max(r.min(MAX_RETRY_AFTER)),
            None => wait,
        })
    }

    async fn delivered(
        &self,
        name: &Name,
        state: &Installation,
        through: u64,
    ) -> Result<(), Transient> {
        if through <= state.cursor {
            return Ok(());
        }
        self.record(
            name,
            format!("delivered/{through}"),
            InstallationCommand::Delivered { sequence: through },
        )
        .await
    }

    /// Records a report under an id derived from the installation and the
    /// message, so a retry of the record appends it once.
    async fn record(
        &self,
        name: &Name,
        id: String,
        command: InstallationCommand,
    ) -> Result<(), Transient> {
        let meta = CommandMeta::new(
            format!("webhook/{name}/{id}"),
            Principal::reader(WEBHOOK_WORKER),
        );
        self.inner
            .executor
            .execute::<Installation>(name, &command, &meta)
            .await?;
        Ok(())
    }

    /// The installation's webhook secrets valid now, newest first.
    async fn secrets(&self, name: &Name) -> Result<Vec<String>, Transient> {
        Ok(sqlx::query_scalar(
            "SELECT secret FROM plugin_webhook_secrets
              WHERE installation = $1 AND revoked_at IS NULL
                AND (expires_at IS NULL OR expires_at > now())
              ORDER BY created_at DESC",
        )
        .bind(name.as_str())
        .fetch_all(&self.inner.pool)
        .await?)
    }

    async fn read_one(&self, sequence: u64) -> Result<Option<StoredCommit>, Transient> {
        let Some(m) = self
            .inner
            .log
            .get(sequence)
            .await
            .map_err(|e| Transient::Log(e.to_string()))?
        else {
            return Ok(None);
        };
        Ok(codec::decode_commit(&m.payload)
            .ok()
            .map(|commit| StoredCommit { sequence, commit }))
    }

    /// Posts every selected event of a commit, in order; the first failure ends it.
    async fn post_commit(
        &self,
        webhook: &Webhook<'_>,
        stored: &StoredCommit,
        select: &Selection,
    ) -> Outcome {
        let c = &stored.commit;
        for (index, event) in c.events.iter().enumerate() {
            if !select.receives(c.kind.context(), event) {
                continue;
            }
            let body = payload(stored, index, event);
            let id = format!("{}-{}-{index}", webhook.installation, stored.sequence);
            match self.post(webhook, &id, stored.sequence, &body).await {
                Outcome::Delivered => {}
                other => return other,
            }
        }
        Outcome::Delivered
    }

    /// One signed post.
    pub async fn post(
        &self,
        webhook: &Webhook<'_>,
        id: &str,
        sequence: u64,
        body: &[u8],
    ) -> Outcome {
        let failed = |status: u32, error: String, retry_after| Outcome::Failed {
            attempt: Attempt {
                sequence,
                status,
                error,
            },
            retry_after,
        };
        let config = &self.inner.config;
        if let Err(e) = config.guard.check_url(webhook.url, config.allow_http) {
            return failed(0, e, None);
        }
        let now = Utc::now().timestamp();
        let mut signatures = Vec::new();
        for secret in webhook.secrets {
            match standardwebhooks::Webhook::new(secret).and_then(|w| w.sign(id, now, body)) {
                Ok(s) => signatures.push(s),
                Err(e) => return failed(0, format!("cannot sign: {e}"), None),
            }
        }
        let response = self
            .inner
            .http
            .post(webhook.url.clone())
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, now.to_string())
            .header(
                standardwebhooks::HEADER_WEBHOOK_SIGNATURE,
                signatures.join(" "),
            )
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return failed(0, error_chain(&e), None),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        // The answer's first bytes, for the record; the rest is not read.
        let mut answer = Vec::new();
        while answer.len() < MAX_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                _ => break,
            }
        }
        answer.truncate(MAX_ANSWER);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let attempt = Attempt {
            sequence,
            status: u32::from(status.as_u16()),
            error: if status.is_redirection() {
                format!("redirects are not followed; {text}")
            } else {
                text
            },
        };
        if status == reqwest::StatusCode::GONE {
            Outcome::Gone(attempt)
        } else {
            Outcome::Failed {
                attempt,
                retry_after,
            }
        }
    }
}

/// Where and how one installation's posts go.
pub struct Webhook<'a> {
    pub installation: &'a Name,
    pub url: &'a reqwest::Url,
    /// `whsec_…`, each signs (two during a rotation).
    pub secrets: &'a [String],
}

/// The body: Standard Webhooks' `type`, `timestamp` and `data`, where data
/// is the event's `EventRecord` in the proto3 JSON mapping.
fn payload(stored: &StoredCommit, index: usize, event: &Event) -> Vec<u8> {
    let c = &stored.commit;
    let record = stored.record(index, event, false);
    serde_json::to_vec(&serde_json::json!({
        "type": event.type_name(),
        "timestamp": c.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": record,
    }))
    .unwrap_or_default()
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date
/// (then the time from `now` until it; a date past is no wait). Anything
/// else: `None`, as if the header were not there.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::retry_after;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Mon, 07 Dec 2026 21:00:00 GMT").unwrap();
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Mon, 07 Dec 2026 21:02:30 GMT", now),
            Some(Duration::from_secs(150))
        );
        // A date already past: no wait beyond the schedule's.
        assert_eq!(
            retry_after("Mon, 07 Dec 2026 20:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for nonsense in ["", "-5", "soon", "1.5", "Tomorrow, 25:00"] {
            assert_eq!(
                retry_after(nonsense, SystemTime::UNIX_EPOCH),
                None,
                "{nonsense:?}"
            );
        }
    }
}
