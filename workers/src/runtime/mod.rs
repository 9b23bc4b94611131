//! The projection runtime: batches applied in one PostgreSQL transaction
//! together with the checkpoint (invariant 4), one fenced active worker per
//! projection, and the shadow rebuild behind `paved replay`.
//!
//! What makes a live worker exactly-once in effect, through crashes of
//! itself, of NATS and of PostgreSQL:
//!
//! - **The checkpoint is the position.** Every session reads the checkpoint
//!   from the database and opens a consumer of its own right after it; acks
//!   play no part (the consumer does not take them).
//! - **No gap within a session.** Each message must be the consumer's next
//!   delivery (consumer sequence `n + 1`, delivered once); anything else (a
//!   pull lost in a NATS reconnect, a recreated consumer) ends the session and
//!   the next one starts again from the database's checkpoint.
//! - **No gap across database trouble.** Batches commit synchronously, and
//!   each batch checks under the checkpoint row's lock that the database's
//!   checkpoint is still the one this worker last committed: a checkpoint
//!   that went back (a failover to a replica that had not received the last
//!   commits, a restore) ends the session, which re-reads from the database.
//! - **One writer.** The active worker holds an advisory lock and a fencing
//!   epoch it incremented when it took the lock; every batch checks the epoch
//!   under the row lock. A PostgreSQL restart drops advisory locks: a standby
//!   may then take over and increment the epoch, and the old worker's next
//!   batch is refused (it goes back to standing by) before it writes anything.
//!
//! The jobs live in their own files: [`worker`] (the live worker),
//! [`rebuild`] (the shadow rebuild and the check behind `paved replay`),
//! [`registry`](crate::registry) lists every projection; the checkpoint
//! SQL is [`paved_eventlog::checkpoints`]'s.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Message;
use futures::{FutureExt, StreamExt};
use paved_domain::ops::Quarantine;
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::checkpoints::CheckpointError;
use paved_eventlog::readmodel::Partition;
use paved_eventlog::{DecodeError, EventLog, StoredCommit, codec, quarantine};
use sqlx::{PgConnection, PgPool};

use crate::lease::{self, LeaseError};

mod rebuild;
mod worker;

pub use rebuild::{
    RebuildLimits, RebuildProgress, RebuildReport, TableCheck, check, check_with, create_shadow,
    drop_shadow, rebuild, shadow_schema,
};
pub use worker::{Fence, ProjectionWorker, Session};

/// Most messages applied in one transaction by a running projection.
pub const MAX_BATCH: usize = 1000;
/// Most messages a rebuild decodes and folds at a time (nobody waits on its
/// latency; fewer, larger transactions go faster).
pub const REBUILD_BATCH: usize = 5000;
/// Most rows a rebuild holds in memory across batches (a projection's
/// [`Projection::Window`]) before it writes them: above the design's 50,000
/// entities, so a rebuild writes each final row once.
pub const REBUILD_WINDOW_ROWS: usize = 100_000;
/// How long an idle worker waits for messages before it checks its lease.
pub(crate) const LEASE_CHECK: Duration = lease::CHECK_EVERY;
/// A session's consumer is removed by the server this long after its worker
/// went away without deleting it (a crash).
pub(crate) const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);

/// A read model fed by the log. `apply` writes one batch of commits (already
/// filtered to those after the checkpoint) inside the caller's transaction;
/// it must not commit, and it must not write the checkpoint.
pub trait Projection: Send + Sync + 'static {
    /// The projection's name in `projection_checkpoints`.
    const NAME: &'static str;
    /// The bounded context it reads (`paved.<context>.>`); `None` reads everything.
    const CONTEXT: Option<&'static str>;
    /// The tables it writes, and only it writes.
    const TABLES: &'static [&'static str];

    /// The share of the read model this instance writes; a partitioned
    /// projection's `apply` must apply only the commits its share owns.
    fn partition(&self) -> Partition {
        Partition::WHOLE
    }

    fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// What a rebuild may keep in memory across batches before writing it
    /// (`()`: nothing, each batch is applied as a live worker applies it).
    /// A projection with a window folds each batch into it
    /// ([`fold_into`](Self::fold_into), reading from its tables only rows the
    /// window does not hold) and writes each row once when the window is
    /// written ([`write_window`](Self::write_window)); its `apply` must be
    /// exactly that over a one-batch window, so a rebuild's rows cannot
    /// differ from a live worker's.
    type Window: Default + Send;

    /// Folds `batch` into `window` (default: applies it at once).
    fn fold_into(
        &self,
        conn: &mut PgConnection,
        window: &mut Self::Window,
        batch: &[StoredCommit],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = window;
        self.apply(conn, batch)
    }

    /// Rows the window holds (a rebuild writes it past [`REBUILD_WINDOW_ROWS`]).
    fn window_rows(window: &Self::Window) -> usize {
        let _ = window;
        0
    }

    /// Writes what the window holds and empties it.
    fn write_window(
        &self,
        conn: &mut PgConnection,
        window: &mut Self::Window,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = (conn, window);
        async { Ok(()) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("read-model row does not parse: {0}")]
    BadRow(String),
    #[error("message at sequence {sequence} does not decode: {source}")]
    Decode {
        sequence: u64,
        #[source]
        source: DecodeError,
    },
    #[error("jetstream: {0}")]
    JetStream(String),
    /// A sealed survey response does not open (another survey secret).
    #[error("the sealed response at sequence {sequence} does not open: {source}")]
    Sealed {
        sequence: u64,
        #[source]
        source: paved_eventlog::survey_keys::OpenError,
    },
    /// Another worker took the projection over (its epoch is newer).
    #[error("another worker took over the projection (epoch {current}, this worker's {ours})")]
    LeaseLost { ours: i64, current: i64 },
    /// The database's checkpoint is behind one this worker committed.
    #[error(
        "the database's checkpoint ({database}) is behind the one this worker committed ({committed}): commits were lost (a crash or a failover); re-reading from the database's checkpoint"
    )]
    CheckpointBehind { database: u64, committed: u64 },
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The checkpoints of an earlier partitioning cannot be continued.
    #[error("{0}")]
    Partitioning(String),
    /// The consumer skipped or repeated a delivery.
    #[error("the consumer delivered {got} where {expected} was next; reopening at the checkpoint")]
    Gap { expected: u64, got: String },
}

impl ProjectionError {
    /// A message the projection cannot get past (it does not decode, or a
    /// sealed response does not open): the projection stops there, loudly.
    pub fn halts(&self) -> bool {
        matches!(self, Self::Decode { .. } | Self::Sealed { .. })
    }

    /// The sequence of a message that does not decode: what a quarantine
    /// can set aside (a sealed response that does not open needs its key).
    pub fn undecodable(&self) -> Option<u64> {
        match self {
            Self::Decode { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }
}

impl From<CheckpointError> for ProjectionError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Db(e) => Self::Postgres(e),
            CheckpointError::Partitioning(why) => Self::Partitioning(why),
        }
    }
}

fn js_err(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::JetStream(e.to_string())
}

/// Where a projection stands; published on a watch channel for health and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    Starting,
    /// Waiting for the lock another worker holds.
    Standby,
    Running,
    /// Stopped by an error it cannot get past (an undecodable message).
    Failed(String),
    Stopped,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionStatus {
    /// Its checkpoint row: the projection's name, or its share's
    /// (`delivery-0of2`).
    pub name: String,
    /// The subjects it reads (`<prefix>.<context>.>`).
    pub filter_subject: String,
    pub health: Health,
    /// Last stream sequence applied.
    pub checkpoint: u64,
    /// Messages the server still holds for the consumer after the last batch.
    pub pending: u64,
    pub applied_messages: u64,
    pub batches: u64,
    pub decode_errors: u64,
    /// Milliseconds from the newest message's publish time to its commit, last batch.
    pub lag_ms: u64,
    /// Sessions ended because the database's checkpoint had gone back.
    pub checkpoint_regressions: u64,
    /// Times this worker found another one had taken over.
    pub leases_lost: u64,
}

/// What one unit of work did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was committed up to `checkpoint`.
    Applied {
        messages: usize,
        skipped: usize,
        checkpoint: u64,
    },
    /// Every message in the batch was at or below the checkpoint.
    Skipped { messages: usize },
    /// Nothing arrived for a while; the lease was checked.
    Idle,
    /// The shutdown token fired while waiting; nothing was in flight.
    Stopped,
}

/// The name prefix of a projection's session consumers.
pub fn consumer_name(projection: &str) -> String {
    format!("paved-projection-{projection}")
}

pub(crate) async fn delete_consumer(log: &EventLog, name: &str) {
    log.delete_consumer(name).await;
}

/// How long a batch waits for messages the server says are on their way.
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// The next batch after `first`: takes what follows while the server
/// reports more pending for this consumer (up to `max`). A caught-up
/// projection applies each message at once (low lag); one with a backlog
/// applies big batches (high throughput).
pub(crate) async fn next_batch<S, E>(
    first: Message,
    messages: &mut S,
    max: usize,
) -> Result<Vec<Message>, ProjectionError>
where
    S: futures::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch = vec![first];
    while batch.len() < max {
        let ready = match messages.next().now_or_never() {
            Some(next) => next,
            None => {
                let pending = batch
                    .last()
                    .and_then(|m| m.info().ok())
                    .map_or(0, |i| i.pending);
                if pending == 0 {
                    break;
                }
                match tokio::time::timeout(BATCH_WAIT, messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        match ready {
            Some(m) => batch.push(m.map_err(js_err)?),
            None => break,
        }
    }
    Ok(batch)
}

/// Waits for one message, then takes what is ready (see [`next_batch`]).
pub(crate) async fn wait_batch<S, E>(
    messages: &mut S,
    max: usize,
) -> Result<Vec<Message>, ProjectionError>
where
    S: futures::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let first = messages
        .next()
        .await
        .ok_or_else(|| js_err("consumer stream ended"))?
        .map_err(js_err)?;
    next_batch(first, messages, max).await
}

/// Messages an operator set aside for this projection, by sequence.
pub type Skips = HashMap<u64, Quarantine>;

/// What [`decode`] made of a batch.
pub(crate) struct Decoded {
    pub(crate) commits: Vec<StoredCommit>,
    /// The last sequence decoded or set aside: where the checkpoint may go.
    pub(crate) through: u64,
    /// The first message that does not decode (and is not set aside).
    pub(crate) bad: Option<ProjectionError>,
}

/// Decodes messages in order up to stream sequence `up_to`, passing over
/// those quarantined (`skips`, for exactly their bytes); stops at the first
/// other one that does not decode and returns its error beside the prefix.
pub(crate) fn decode(messages: &[Message], up_to: u64, skips: &Skips) -> Decoded {
    let mut out = Decoded {
        commits: Vec::with_capacity(messages.len()),
        through: 0,
        bad: None,
    };
    for m in messages {
        let sequence = match m.info() {
            Ok(i) => i.stream_sequence,
            Err(e) => {
                out.bad = Some(js_err(e));
                return out;
            }
        };
        if sequence > up_to {
            break;
        }
        match codec::decode_commit(&m.payload) {
            Ok(commit) => out.commits.push(StoredCommit { sequence, commit }),
            Err(_)
                if skips
                    .get(&sequence)
                    .is_some_and(|q| quarantine::holds_for(q, &m.payload)) =>
            {
                tracing::info!(sequence, "passing over a quarantined message");
            }
            Err(source) => {
                out.bad = Some(ProjectionError::Decode { sequence, source });
                return out;
            }
        }
        out.through = sequence;
    }
    out
}

/// The quarantines of the log that hold for `projection` (signed by `keys`).
pub(crate) async fn skips_for(
    log: &EventLog,
    keys: &TrustedKeys,
    projection: &str,
) -> Result<Skips, ProjectionError> {
    if keys.is_empty() {
        return Ok(Skips::new());
    }
    let all = quarantine::all(log, keys).await.map_err(js_err)?;
    Ok(all
        .into_iter()
        .filter(|(_, q)| q.covers(projection))
        .collect())
}

pub(crate) fn filter<P: Projection>(log: &EventLog) -> String {
    match P::CONTEXT {
        Some(context) => log.context_filter(context),
        None => format!("{}.>", log.config().subject_prefix),
    }
}

/// Settings of every projection transaction.
///
/// Custom plans: a projection's statements look up hundreds of keys at once
/// in tables that grow from empty (above all during a rebuild); a generic
/// plan cached while a table was small keeps scanning it whole once large.
///
/// No JIT, and index lookups priced as what they are here (the read
/// models' hot pages are cached; `random_page_cost` 1.1 is the usual SSD
/// value): a projection catching up fills its tables faster than `ANALYZE`
/// follows, and with stale statistics and the default cost of 4 the planner
/// chose sequential scans (and, past `jit_above_cost`, a quarter of a second
/// of JIT compilation) for a batch's key lookups, so each batch cost more
/// as the table grew: the delivery projection caught up 300,000 events at
/// 4,600 a second against 11,000 for 100,000.
///
/// Commits stay synchronous: with asynchronous commit a database crash takes
/// back the last commits after readers saw them (and after `min_sequence`
/// reads were answered from them), so read-your-writes would step back.
pub(crate) async fn transaction_settings(conn: &mut PgConnection) -> Result<(), ProjectionError> {
    sqlx::raw_sql(
        "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off;
         SET LOCAL random_page_cost = 1.1",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Commits a live worker applies between two looks at whether its tables
/// need `ANALYZE` ([`analyze_stale`]).
pub const ANALYZE_EVERY: u64 = 20_000;

/// Refreshes the planner's statistics of `P`'s (live) tables.
///
/// The API's reads plan from them: a projection that caught up on a
/// backlog, or a rebuild that replaced every row, leaves tables whose
/// statistics say nothing of what they now hold until autovacuum's analyze
/// comes round (never, where autovacuum is off, as on the CI machine). With
/// none, a page of `ListServices` of an owner holding 50,000 services was
/// planned as a bitmap scan of all of them and a sort: 25 ms at 1,000,000
/// events, 43 ms at 2,000,000, against 2 ms once analyzed. `ANALYZE` reads
/// a sample (30,000 rows at the default target) and blocks neither reads
/// nor writes.
pub async fn analyze<P: Projection>(pool: &PgPool) -> Result<(), ProjectionError> {
    analyze_tables(pool, P::TABLES).await
}

async fn analyze_tables(pool: &PgPool, tables: &[impl AsRef<str>]) -> Result<(), ProjectionError> {
    let names: Vec<&str> = tables.iter().map(AsRef::as_ref).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {}", names.join(", "))))
        .execute(pool)
        .await?;
    Ok(())
}

/// Analyzes those of `P`'s tables that changed by more than autovacuum's
/// own rule would analyze (50 rows plus a tenth of the table since the
/// last `ANALYZE`), so a worker keeps its statistics current without
/// autovacuum, ever less often as the tables grow. Returns the tables
/// analyzed.
pub async fn analyze_stale<P: Projection>(pool: &PgPool) -> Result<Vec<String>, ProjectionError> {
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s
           JOIN pg_class c ON c.oid = s.relid
          WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
            AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
          ORDER BY 1",
    )
    .bind(P::TABLES)
    .fetch_all(pool)
    .await?;
    if !stale.is_empty() {
        analyze_tables(pool, &stale).await?;
    }
    Ok(stale)
}

pub(crate) async fn set_search_path(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<(), ProjectionError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path TO {schema}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) fn decode_all(
    messages: &[Message],
    up_to: u64,
    skips: &Skips,
) -> Result<Decoded, ProjectionError> {
    let mut d = decode(messages, up_to, skips);
    match d.bad.take() {
        None => Ok(d),
        Some(e) => Err(e),
    }
}
