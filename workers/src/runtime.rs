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

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::{FutureExt, StreamExt};
use paved_eventlog::readmodel::{CHECKPOINT_CHANNEL, Partition};
use paved_eventlog::{DecodeError, EventLog, StoredCommit, TraceContext, codec};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tracing::Instrument;

use crate::lease::{self, Lease, LeaseError};
use paved_domain::ops::Quarantine;
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::quarantine;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// Most messages applied in one transaction by a running projection.
pub const MAX_BATCH: usize = 1000;
/// Most messages applied in one transaction by a rebuild (nobody waits on
/// its latency; fewer, larger transactions go faster).
pub const REBUILD_BATCH: usize = 5000;
/// How long an idle worker waits for messages before it checks its lease.
const LEASE_CHECK: Duration = lease::CHECK_EVERY;
/// A session's consumer is removed by the server this long after its worker
/// went away without deleting it (a crash).
const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);

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

/// One projection, fed by a consumer of its own.
pub struct ProjectionWorker<P: Projection> {
    projection: P,
    /// Its checkpoint row (and lease): the projection's name, or its share's.
    name: String,
    pool: PgPool,
    log: EventLog,
    status: watch::Sender<ProjectionStatus>,
    /// Whose quarantine records this worker honours (none: it halts for good
    /// at a message that does not decode).
    quarantine_keys: TrustedKeys,
}

/// The right to write a projection: its lease and the fencing epoch taken with it.
pub struct Fence {
    lease: Lease,
    epoch: i64,
}

/// An open consumer session of the active worker.
pub struct Session {
    messages: futures::stream::BoxStream<'static, Result<Message, ProjectionError>>,
    consumer: String,
    /// The consumer sequence the next message must have.
    next_delivery: u64,
    /// The checkpoint this worker last read or committed: the database must
    /// never be found behind it.
    committed: u64,
    /// Messages quarantined for this projection.
    skips: Skips,
}

impl<P: Projection> ProjectionWorker<P> {
    pub fn new(projection: P, pool: PgPool, log: EventLog) -> Self {
        let name = projection.partition().checkpoint_name(P::NAME);
        let (status, _) = watch::channel(ProjectionStatus {
            name: name.clone(),
            filter_subject: filter::<P>(&log),
            health: Health::Starting,
            checkpoint: 0,
            pending: 0,
            applied_messages: 0,
            batches: 0,
            decode_errors: 0,
            lag_ms: 0,
            checkpoint_regressions: 0,
            leases_lost: 0,
        });
        Self {
            projection,
            name,
            pool,
            log,
            status,
            quarantine_keys: TrustedKeys::default(),
        }
    }

    /// Honours quarantine records signed by `keys`: a halted worker waits
    /// for one that sets its stuck message aside, then carries on.
    pub fn with_quarantine_keys(mut self, keys: TrustedKeys) -> Self {
        self.quarantine_keys = keys;
        self
    }

    pub fn status(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown`: a batch in flight is committed first. Stands by
    /// while another worker holds the projection, and again whenever it finds
    /// it lost the projection. Returns an error, and leaves the health
    /// `Failed`, when a message does not decode: the projection stops there
    /// instead of skipping it.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProjectionError> {
        loop {
            let Some(mut fence) = self.acquire(&shutdown).await else {
                break;
            };
            self.status.send_modify(|s| s.health = Health::Running);
            let led = self.lead(&mut fence, &shutdown).await;
            // Stands by or waits without the lock: another worker may go on.
            drop(fence);
            match led {
                Ok(()) => break,
                Err(e) if e.halts() => {
                    let Some(sequence) =
                        e.undecodable().filter(|_| !self.quarantine_keys.is_empty())
                    else {
                        return Err(e);
                    };
                    tracing::error!(
                        projection = %self.name,
                        sequence,
                        "halted; waiting for the message to be fixed or quarantined (paved projection skip)"
                    );
                    if !self.await_quarantine(sequence, &shutdown).await {
                        break;
                    }
                    tracing::warn!(
                        projection = %self.name,
                        sequence,
                        "the message is quarantined: carrying on past it"
                    );
                }
                Err(e) => {
                    tracing::warn!(projection = %self.name, error = %e, "lost the projection; standing by");
                    self.status.send_modify(|s| {
                        s.leases_lost += 1;
                        s.health = Health::Standby;
                    });
                }
            }
        }
        self.status.send_modify(|s| s.health = Health::Stopped);
        tracing::info!(projection = %self.name, "projection stopped");
        Ok(())
    }

    /// Waits until `sequence` has a quarantine record for this projection
    /// signed by a trusted key (checking every few seconds); `false` on shutdown.
    async fn await_quarantine(&self, sequence: u64, shutdown: &CancellationToken) -> bool {
        loop {
            if let Ok(Some(m)) = self.log.get(sequence).await
                && let Ok(Some(q)) =
                    quarantine::find(&self.log, &self.quarantine_keys, sequence, &m.payload).await
                && q.covers(P::NAME)
            {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(LEASE_CHECK) => {}
            }
        }
    }

    /// Takes the projection's lease (standing by while another worker holds
    /// it) and increments its fencing epoch. `None` when `shutdown` fired first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Fence> {
        let key = format!("paved.projection.{}", self.name);
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut lease = Lease::acquire(&self.pool, &key, shutdown).await?;
            match self.take_epoch(&mut lease).await {
                Ok(epoch) => {
                    tracing::info!(projection = %self.name, epoch, "took the projection");
                    return Some(Fence { lease, epoch });
                }
                Err(e) => {
                    tracing::warn!(projection = %self.name, error = %e, "cannot take the epoch; retrying");
                    drop(lease);
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(lease::CHECK_EVERY);
                }
            }
        }
    }

    async fn take_epoch(&self, lease: &mut Lease) -> Result<i64, ProjectionError> {
        ensure_partitioning(&self.pool, P::NAME, self.projection.partition().count).await?;
        // Committed synchronously (the session default) before anything is written.
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE projection_checkpoints SET epoch = epoch + 1 WHERE projection = $1 RETURNING epoch",
        )
        .bind(&self.name)
        .fetch_one(lease.conn())
        .await?;
        // Consumers of earlier versions (one durable consumer per projection).
        delete_consumer(&self.log, &consumer_name(P::NAME)).await;
        Ok(epoch)
    }

    /// Is the projection still ours? The lock must be held and the epoch unchanged.
    async fn check_fence(&self, fence: &mut Fence) -> Result<(), ProjectionError> {
        fence.lease.check().await?;
        let current: i64 =
            sqlx::query_scalar("SELECT epoch FROM projection_checkpoints WHERE projection = $1")
                .bind(&self.name)
                .fetch_one(fence.lease.conn())
                .await?;
        if current != fence.epoch {
            return Err(ProjectionError::LeaseLost {
                ours: fence.epoch,
                current,
            });
        }
        Ok(())
    }

    /// Projects while the lease holds: sessions are reopened at the
    /// database's checkpoint after any trouble. `Ok` on shutdown; an error
    /// when the lease was lost or a message does not decode.
    async fn lead(
        &self,
        fence: &mut Fence,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let mut session = match self.open(fence.epoch).await {
                Ok(s) => s,
                Err(e @ ProjectionError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = %self.name, error = %e, "cannot open a session; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // The lock lives on a connection of its own: make sure it survived.
                    self.check_fence(fence).await?;
                    continue;
                }
            };
            let ended = loop {
                let checked = match self.process_next(&mut session, fence.epoch, shutdown).await {
                    Ok(Outcome::Stopped) => break None,
                    Ok(Outcome::Idle) => self.check_fence(fence).await,
                    Ok(o) => {
                        if matches!(o, Outcome::Applied { .. }) {
                            backoff = Duration::from_millis(100);
                        }
                        fence.lease.check_if_due().await.map_err(Into::into)
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
                    break Some(e);
                }
            };
            delete_consumer(&self.log, &session.consumer).await;
            match ended {
                None => break,
                Some(e) if e.halts() => return Err(e),
                Some(e @ (ProjectionError::LeaseLost { .. } | ProjectionError::Lease(_))) => {
                    return Err(e);
                }
                Some(e @ ProjectionError::CheckpointBehind { .. }) => {
                    tracing::error!(projection = %self.name, error = %e, "read model went back");
                    self.status.send_modify(|s| s.checkpoint_regressions += 1);
                }
                Some(e) => {
                    tracing::warn!(projection = %self.name, error = %e, retry_in = ?backoff, "session ended; reopening at the checkpoint");
                    // A batch that fails again and again (the database is
                    // down, a statement fails) is retried ever more slowly.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // A database that went away took the lock with it.
                    self.check_fence(fence).await?;
                }
            }
        }
        Ok(())
    }

    /// Opens a session: a consumer of this worker's own that starts right
    /// after the database's checkpoint.
    pub async fn open(&self, epoch: i64) -> Result<Session, ProjectionError> {
        let (checkpoint, current) = read_checkpoint(&self.pool, &self.name).await?;
        if current != epoch {
            return Err(ProjectionError::LeaseLost {
                ours: epoch,
                current,
            });
        }
        let name = format!(
            "{}-{epoch}-{:08x}",
            consumer_name(&self.name),
            rand::random::<u32>()
        );
        let filter = filter::<P>(&self.log);
        let consumer = self
            .log
            .stream()
            .create_consumer(pull::Config {
                name: Some(name.clone()),
                description: Some(format!("Paved projection {} (epoch {epoch})", self.name)),
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: checkpoint + 1,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: CONSUMER_INACTIVE,
                ..Default::default()
            })
            .await
            .map_err(js_err)?;
        sqlx::query(
            "UPDATE projection_checkpoints SET consumer = $2, filter_subject = $3 WHERE projection = $1",
        )
        .bind(&self.name)
        .bind(&name)
        .bind(&filter)
        .execute(&self.pool)
        .await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_BATCH)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(js_err)?
            .map(|m| m.map_err(js_err))
            .boxed();
        self.status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.health = Health::Running;
        });
        let skips = skips_for(&self.log, &self.quarantine_keys, P::NAME).await?;
        Ok(Session {
            messages,
            consumer: name,
            next_delivery: 1,
            committed: checkpoint,
            skips,
        })
    }

    fn fail(&self, e: &ProjectionError) {
        tracing::error!(projection = %self.name, error = %e, "projection stopped at a message it cannot apply");
        self.status.send_modify(|s| {
            s.decode_errors += 1;
            s.health = Health::Failed(e.to_string());
        });
    }

    /// Waits for the next ready messages (up to [`MAX_BATCH`]) and applies
    /// them in one transaction with the checkpoint. Messages before an
    /// undecodable one are applied; the undecodable one stops the projection
    /// (health `Failed`) and is never skipped.
    pub async fn process_next(
        &self,
        session: &mut Session,
        epoch: i64,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, ProjectionError> {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Outcome::Stopped),
            next = tokio::time::timeout(LEASE_CHECK, session.messages.next()) => match next {
                Err(_) => return Ok(Outcome::Idle),
                Ok(None) => return Err(js_err("consumer stream ended")),
                Ok(Some(m)) => m?,
            },
        };
        let messages = next_batch(first, &mut session.messages, MAX_BATCH).await?;
        for m in &messages {
            let info = m.info().map_err(js_err)?;
            if info.consumer_sequence != session.next_delivery || info.delivered != 1 {
                return Err(ProjectionError::Gap {
                    expected: session.next_delivery,
                    got: format!(
                        "{} (delivered {} times)",
                        info.consumer_sequence, info.delivered
                    ),
                });
            }
            session.next_delivery += 1;
        }
        let Decoded {
            commits,
            through,
            bad,
        } = decode(&messages, u64::MAX, &session.skips);
        // The messages up to `through`: applied, or quarantined and passed over.
        let taken = messages
            .iter()
            .take_while(|m| m.info().is_ok_and(|i| i.stream_sequence <= through))
            .count();
        let good = &messages[..taken];
        let span = batch_span(&self.name, &filter::<P>(&self.log), good);
        // Each sampled command's trace shows its own apply, for as long as
        // the batch's transaction takes.
        let per_message = message_spans(&self.name, good, &span);
        let started = Instant::now();
        let applied = self
            .apply(session, epoch, commits, through, good)
            .instrument(span.clone())
            .await;
        if let Err(e) = &applied {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", e.to_string());
        } else if !good.is_empty() {
            paved_eventlog::latency::PROJECTION_APPLY.observe(
                &[("projection", &self.name)],
                started.elapsed(),
                &span,
            );
        }
        drop(per_message);
        let outcome = match applied {
            Err(e) if e.halts() => {
                self.fail(&e);
                return Err(e);
            }
            other => other?,
        };
        if let Some(last) = good.last() {
            let pending = last.info().map(|i| i.pending).unwrap_or(0);
            self.status.send_modify(|s| s.pending = pending);
        }
        if let Some(e) = bad {
            self.fail(&e);
            return Err(e);
        }
        Ok(outcome)
    }

    async fn apply(
        &self,
        session: &mut Session,
        epoch: i64,
        mut batch: Vec<StoredCommit>,
        through: u64,
        messages: &[Message],
    ) -> Result<Outcome, ProjectionError> {
        let total = batch.len();
        if total == 0 && through == 0 {
            return Ok(Outcome::Skipped { messages: 0 });
        }
        let mut tx = self.pool.begin().await?;
        custom_plans(&mut tx).await?;
        let (checkpoint, current) = lock_checkpoint(&mut tx, &self.name).await?;
        if current != epoch {
            return Err(ProjectionError::LeaseLost {
                ours: epoch,
                current,
            });
        }
        if checkpoint < session.committed {
            return Err(ProjectionError::CheckpointBehind {
                database: checkpoint,
                committed: session.committed,
            });
        }
        // A rebuild's swap may have moved the checkpoint past what we read.
        session.committed = checkpoint;
        batch.retain(|c| c.sequence > checkpoint);
        // Quarantined messages move the checkpoint too: they are behind us.
        let last = batch.last().map_or(through, |c| c.sequence.max(through));
        if last <= checkpoint {
            tx.rollback().await?;
            return Ok(Outcome::Skipped { messages: total });
        }
        self.projection.apply(&mut tx, &batch).await?;
        write_checkpoint(&mut tx, &self.name, last).await?;
        tx.commit().await?;
        session.committed = last;
        let newest = messages
            .last()
            .and_then(|m| m.info().ok())
            .map(|i| i.published);
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        let lag_ms = newest
            .map(|p| ((now_ns - p.unix_timestamp_nanos()) / 1_000_000).max(0) as u64)
            .unwrap_or(0);
        self.status.send_modify(|s| {
            s.checkpoint = last;
            s.applied_messages += batch.len() as u64;
            s.batches += 1;
            s.lag_ms = lag_ms;
        });
        Ok(Outcome::Applied {
            messages: batch.len(),
            skipped: total - batch.len(),
            checkpoint: last,
        })
    }
}

/// The CONSUMER span of one batch: a trace of its own, linked to the
/// producer span of every message in it.
fn batch_span(projection: &str, filter: &str, messages: &[Message]) -> tracing::Span {
    let sequences = messages.first().zip(messages.last()).and_then(|(f, l)| {
        Some((
            f.info().ok()?.stream_sequence,
            l.info().ok()?.stream_sequence,
        ))
    });
    let span = tracing::info_span!(
        parent: None,
        "project",
        otel.name = %format!("process {filter}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %filter,
        messaging.batch.message_count = messages.len(),
        paved.projection = %projection,
        paved.batch.first_sequence = sequences.map(|s| s.0),
        paved.batch.last_sequence = sequences.map(|s| s.1),
    );
    for m in messages {
        paved_eventlog::trace::add_link(&span, &TraceContext::from_headers(m.headers.as_ref()));
    }
    span
}

/// One CONSUMER span per message whose producer was sampled, in the
/// producer's trace and linked to the batch: the command's own trace shows
/// where it was applied.
fn message_spans(
    projection: &str,
    messages: &[Message],
    batch: &tracing::Span,
) -> Vec<tracing::Span> {
    messages
        .iter()
        .filter_map(|m| {
            let trace = TraceContext::from_headers(m.headers.as_ref());
            if !paved_eventlog::trace::sampled(&trace) {
                return None;
            }
            let info = m.info().ok()?;
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let span = tracing::info_span!(
                parent: None,
                "apply",
                // Named by the aggregate type (`paved.catalog.team`): span
                // names stay few; the subject itself is an attribute.
                otel.name = %format!(
                    "process {}",
                    m.subject.rsplit_once('.').map_or(m.subject.as_str(), |(t, _)| t)
                ),
                otel.kind = "consumer",
                messaging.system = "nats",
                messaging.operation.type = "process",
                messaging.destination.name = %m.subject,
                messaging.message.id = %msg_id,
                messaging.nats.stream.sequence = info.stream_sequence,
                paved.projection = %projection,
            );
            paved_eventlog::trace::set_remote_parent(&span, &trace);
            paved_eventlog::trace::link_spans(&span, batch);
            Some(span)
        })
        .collect()
}

async fn delete_consumer(log: &EventLog, name: &str) {
    log.delete_consumer(name).await;
}

/// How long a batch waits for messages the server says are on their way.
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// The next batch after `first`: takes what follows while the server
/// reports more pending for this consumer (up to `max`). A caught-up
/// projection applies each message at once (low lag); one with a backlog
/// applies big batches (high throughput).
async fn next_batch<S, E>(
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
async fn wait_batch<S, E>(messages: &mut S, max: usize) -> Result<Vec<Message>, ProjectionError>
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
struct Decoded {
    commits: Vec<StoredCommit>,
    /// The last sequence decoded or set aside: where the checkpoint may go.
    through: u64,
    /// The first message that does not decode (and is not set aside).
    bad: Option<ProjectionError>,
}

/// Decodes messages in order up to stream sequence `up_to`, passing over
/// those quarantined (`skips`, for exactly their bytes); stops at the first
/// other one that does not decode and returns its error beside the prefix.
fn decode(messages: &[Message], up_to: u64, skips: &Skips) -> Decoded {
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
async fn skips_for(
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

fn filter<P: Projection>(log: &EventLog) -> String {
    match P::CONTEXT {
        Some(context) => log.context_filter(context),
        None => format!("{}.>", log.config().subject_prefix),
    }
}

/// Makes sure the checkpoint rows of `projection` split `count` ways exist
/// (`count` 1: its one row), and returns their sequences in share order.
///
/// Missing rows are created together, in one transaction: at the position
/// of the rows of another partitioning if those agree on one sequence (the
/// switch then neither skips nor repeats a message: every share reads the
/// whole context, so all of them continue from there), which are removed;
/// at 0 if there are none. Rows of another partitioning that disagree (its
/// workers were stopped at different places) cannot be continued exactly:
/// [`ProjectionError::Partitioning`], fixed by a rebuild with the new count.
pub async fn ensure_partitioning(
    pool: &PgPool,
    projection: &str,
    count: u32,
) -> Result<Vec<u64>, ProjectionError> {
    let names: Vec<String> = Partition::all(count)
        .iter()
        .map(|p| p.checkpoint_name(projection))
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("paved.partitioning.{projection}"))
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE projection = $1 OR projection LIKE $1 || '-%of%'",
    )
    .bind(projection)
    .fetch_all(&mut *tx)
    .await?;
    let found: HashMap<&str, u64> = rows.iter().map(|(n, s)| (n.as_str(), *s as u64)).collect();
    if let Some(sequences) = names
        .iter()
        .map(|n| found.get(n.as_str()).copied())
        .collect::<Option<Vec<u64>>>()
    {
        tx.rollback().await?;
        return Ok(sequences);
    }
    let others: Vec<(&str, u64)> = rows
        .iter()
        .filter(|(n, _)| !names.contains(n))
        .map(|(n, s)| (n.as_str(), *s as u64))
        .collect();
    let mut at: Vec<u64> = others.iter().map(|(_, s)| *s).collect();
    at.sort_unstable();
    at.dedup();
    let seed = match at.as_slice() {
        [] => 0,
        [one] => *one,
        _ => {
            return Err(ProjectionError::Partitioning(format!(
                "{projection} is to be split {count} way(s), but the checkpoints of its earlier partitioning disagree ({}): rebuild it with the new partitioning (paved projection rebuild {projection})",
                others
                    .iter()
                    .map(|(n, s)| format!("{n} at {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    for name in &names {
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, last_sequence) VALUES ($1, $2)
             ON CONFLICT (projection) DO NOTHING",
        )
        .bind(name)
        .bind(seed as i64)
        .execute(&mut *tx)
        .await?;
    }
    if !others.is_empty() {
        tracing::warn!(
            projection,
            count,
            from = seed,
            "the read model's partitioning changed: its shares continue from the earlier checkpoint"
        );
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ANY($1)")
            .bind(others.iter().map(|(n, _)| *n).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(names
        .iter()
        .map(|n| found.get(n.as_str()).copied().unwrap_or(seed))
        .collect())
}

/// The sequences of the checkpoint rows `names` of `projection`; an error
/// naming the rows there are when one is missing (nothing is created).
async fn existing_checkpoints(
    pool: &PgPool,
    projection: &str,
    names: &[String],
) -> Result<Vec<u64>, ProjectionError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE projection = $1 OR projection LIKE $1 || '-%of%' ORDER BY projection",
    )
    .bind(projection)
    .fetch_all(pool)
    .await?;
    names
        .iter()
        .map(|n| {
            rows.iter()
                .find(|(r, _)| r == n)
                .map(|(_, s)| *s as u64)
                .ok_or_else(|| {
                    ProjectionError::Partitioning(format!(
                        "{projection} has no checkpoint {n:?} (its checkpoints: {}): check it with the partitioning its workers run",
                        if rows.is_empty() {
                            "none".to_owned()
                        } else {
                            rows.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", ")
                        }
                    ))
                })
        })
        .collect()
}

/// The checkpoint's sequence and epoch.
async fn read_checkpoint(pool: &PgPool, projection: &str) -> Result<(u64, i64), ProjectionError> {
    let (seq, epoch): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, epoch FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_one(pool)
    .await?;
    Ok((seq as u64, epoch))
}

/// Locks the checkpoint row for this transaction: batches of one projection
/// (and a rebuild's final swap) never interleave. Returns its sequence and epoch.
async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<(u64, i64), ProjectionError> {
    let (seq, epoch): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, epoch FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(projection)
    .fetch_one(&mut *conn)
    .await?;
    Ok((seq as u64, epoch))
}

/// Moves the checkpoint forward (never back) and tells listeners.
async fn write_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    sequence: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints
            SET last_sequence = GREATEST(last_sequence, $2), updated_at = now()
          WHERE projection = $1",
    )
    .bind(projection)
    .bind(sequence as i64)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHECKPOINT_CHANNEL)
        .bind(format!("{projection}:{sequence}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Progress of a rebuild, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct RebuildProgress {
    pub applied: u64,
    pub total: u64,
}

/// What a rebuild did.
#[derive(Clone, Copy, Debug)]
pub struct RebuildReport {
    pub messages: u64,
    pub checkpoint: u64,
    pub elapsed: Duration,
}

/// The schema a rebuild writes into before it swaps.
pub fn shadow_schema(projection: &str) -> String {
    format!("paved_rebuild_{projection}")
}

/// Rebuilds a projection from sequence 1 into a shadow schema while the live
/// tables keep serving, then swaps: in one transaction that holds the
/// checkpoint locks (so the live workers wait), applies whatever the live
/// workers got to in the meantime, replaces the live rows with the rebuilt
/// ones and sets the checkpoints. Readers see the old rows until that commit.
///
/// `parts` are the shares of the read model (one, whole, unless it is
/// partitioned): each applies its own share of every batch, as the live
/// workers do, and gets its own checkpoint.
///
/// Messages quarantined for this projection by a record signed with one of
/// `keys` are passed over, as the live worker does.
pub async fn rebuild<P: Projection>(
    parts: &[P],
    pool: &PgPool,
    log: &EventLog,
    keys: &TrustedKeys,
    progress: impl FnMut(RebuildProgress),
) -> Result<RebuildReport, ProjectionError> {
    let (report, _) = rebuild_then(parts, pool, log, keys, progress, Finish::Swap).await?;
    Ok(report)
}

/// One table of a `--check`: the live rows against a fresh replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCheck {
    pub table: String,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    pub live_digest: String,
    pub rebuilt_digest: String,
}

impl TableCheck {
    pub fn drifted(&self) -> bool {
        self.live_rows != self.rebuilt_rows || self.live_digest != self.rebuilt_digest
    }
}

/// Replays the projection into a shadow schema up to exactly the live
/// checkpoints (each share to its own) and compares every table (row count
/// and an MD5 over all rows in a stable order), without touching the live
/// tables.
pub async fn check<P: Projection>(
    parts: &[P],
    pool: &PgPool,
    log: &EventLog,
    keys: &TrustedKeys,
    progress: impl FnMut(RebuildProgress),
) -> Result<(RebuildReport, Vec<TableCheck>), ProjectionError> {
    rebuild_then(parts, pool, log, keys, progress, Finish::Check).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Finish {
    Swap,
    Check,
}

/// How long a check waits for a live projection that is behind the replay.
const CHECK_WAIT: Duration = Duration::from_secs(30);

async fn digest(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<(i64, String), ProjectionError> {
    let row: (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {schema}.{table} t"
    )))
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.0, row.1.unwrap_or_default()))
}

/// The parts of one read model: every share of one partitioning, once.
fn shares<P: Projection>(parts: &[P]) -> Result<Vec<Partition>, ProjectionError> {
    let shares: Vec<Partition> = parts.iter().map(Projection::partition).collect();
    let count = shares.first().map_or(0, |p| p.count);
    if count == 0 || shares != Partition::all(count) {
        return Err(ProjectionError::Partitioning(format!(
            "a rebuild of {} needs each of its shares once, in order (got {shares:?})",
            P::NAME
        )));
    }
    Ok(shares)
}

async fn rebuild_then<P: Projection>(
    parts: &[P],
    pool: &PgPool,
    log: &EventLog,
    keys: &TrustedKeys,
    progress: impl FnMut(RebuildProgress),
    finish: Finish,
) -> Result<(RebuildReport, Vec<TableCheck>), ProjectionError> {
    let shares = shares(parts)?;
    let consumer_name = format!("paved-rebuild-{}-{:08x}", P::NAME, rand::random::<u32>());
    let skips = skips_for(log, keys, P::NAME).await?;
    let result = replay_into_shadow(
        parts,
        &shares,
        pool,
        log,
        &skips,
        progress,
        finish,
        &consumer_name,
    )
    .await;
    // Released at once, not left to the server's inactivity threshold.
    delete_consumer(log, &consumer_name).await;
    result
}

/// Applies each share's commits of `batch` up to its own limit (`up_to`).
async fn apply_shares<P: Projection>(
    conn: &mut PgConnection,
    parts: &[P],
    batch: &[StoredCommit],
    up_to: &[u64],
) -> Result<(), ProjectionError> {
    for (part, limit) in parts.iter().zip(up_to) {
        let end = batch.partition_point(|c| c.sequence <= *limit);
        if end > 0 {
            part.apply(&mut *conn, &batch[..end]).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn replay_into_shadow<P: Projection>(
    parts: &[P],
    shares: &[Partition],
    pool: &PgPool,
    log: &EventLog,
    skips: &Skips,
    mut progress: impl FnMut(RebuildProgress),
    finish: Finish,
    consumer_name: &str,
) -> Result<(RebuildReport, Vec<TableCheck>), ProjectionError> {
    let started = Instant::now();
    let names: Vec<String> = shares.iter().map(|p| p.checkpoint_name(P::NAME)).collect();
    if finish == Finish::Check {
        // A check compares with what is there: that partitioning must exist.
        existing_checkpoints(pool, P::NAME, &names).await?;
    }
    let shadow = shadow_schema(P::NAME);
    let live: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    create_shadow::<P>(pool, &live, &shadow).await?;

    let consumer = log
        .stream()
        .create_consumer(pull::Config {
            name: Some(consumer_name.to_owned()),
            description: Some(format!("Paved rebuild of {}", P::NAME)),
            filter_subject: filter::<P>(log),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(js_err)?;
    let total = consumer.cached_info().num_pending;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(REBUILD_BATCH * 2)
        .messages()
        .await
        .map_err(js_err)?;

    // Messages read (commits and quarantined ones): `applied` as progress goes.
    let mut applied = 0u64;
    let mut last = 0u64;
    let everything = vec![u64::MAX; parts.len()];
    let mut conn = pool.acquire().await?;
    while applied < total {
        let received = wait_batch(&mut messages, REBUILD_BATCH).await?;
        let batch = decode_all(&received, u64::MAX, skips)?;
        applied += received.len() as u64;
        last = last.max(batch.through);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        custom_plans(&mut tx).await?;
        set_search_path(&mut tx, &shadow).await?;
        apply_shares(&mut tx, parts, &batch.commits, &everything).await?;
        tx.commit().await?;
        progress(RebuildProgress { applied, total });
    }

    if finish == Finish::Check {
        // Compare like with like: every live share must have got as far as the replay.
        let deadline = Instant::now() + CHECK_WAIT;
        loop {
            let live_at = existing_checkpoints(pool, P::NAME, &names).await?;
            let slowest = live_at.iter().copied().min().unwrap_or(0);
            if slowest >= last {
                break;
            }
            if Instant::now() >= deadline {
                drop_shadow(pool, &shadow).await?;
                return Err(ProjectionError::BadRow(format!(
                    "the live projection is at {slowest}, behind the log ({last}): start its worker and check again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The swap. The live workers' batches lock the same rows (each its own;
    // these all, in a fixed order, also those of another partitioning a
    // rebuild replaces), so from here on they wait for us.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    custom_plans(&mut tx).await?;
    if finish == Finish::Swap {
        for name in &names {
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection) VALUES ($1) ON CONFLICT (projection) DO NOTHING",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
    }
    let locked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE projection = $1 OR projection LIKE $1 || '-%of%'
          ORDER BY projection FOR UPDATE",
    )
    .bind(P::NAME)
    .fetch_all(&mut *tx)
    .await?;
    let live_at: Vec<u64> = names
        .iter()
        .map(|n| {
            locked
                .iter()
                .find(|(l, _)| l == n)
                .map_or(0, |(_, s)| *s as u64)
        })
        .collect();
    let live_checkpoint = live_at.iter().copied().max().unwrap_or(0);
    set_search_path(&mut tx, &shadow).await?;
    while last < live_checkpoint {
        let received = wait_batch(&mut messages, REBUILD_BATCH).await?;
        let batch = decode_all(&received, live_checkpoint, skips)?;
        if batch.through == 0 {
            break;
        }
        // Each share up to where its live worker got (the replay may
        // already be past some of them: those have nothing more here).
        let from = last;
        last = last.max(batch.through);
        applied += received.len() as u64;
        let fresh: Vec<StoredCommit> = batch
            .commits
            .into_iter()
            .filter(|c| c.sequence > from)
            .collect();
        apply_shares(&mut tx, parts, &fresh, &live_at).await?;
    }
    set_search_path(&mut tx, &live).await?;
    if finish == Finish::Check {
        let mut checks = Vec::new();
        for table in P::TABLES {
            let (live_rows, live_digest) = digest(&mut tx, &live, table).await?;
            let (rebuilt_rows, rebuilt_digest) = digest(&mut tx, &shadow, table).await?;
            checks.push(TableCheck {
                table: (*table).to_owned(),
                live_rows,
                rebuilt_rows,
                live_digest,
                rebuilt_digest,
            });
        }
        tx.rollback().await?;
        drop_shadow(pool, &shadow).await?;
        let report = RebuildReport {
            messages: applied,
            checkpoint: last.max(live_checkpoint),
            elapsed: started.elapsed(),
        };
        return Ok((report, checks));
    }
    for table in P::TABLES {
        let sql = format!(
            "DELETE FROM {live}.{table}; INSERT INTO {live}.{table} SELECT * FROM {shadow}.{table}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    // Each share now stands where the replay or its live worker got, whichever is further.
    for (name, at) in names.iter().zip(&live_at) {
        let checkpoint = last.max(*at);
        sqlx::query(
            "UPDATE projection_checkpoints SET last_sequence = $2, updated_at = now() WHERE projection = $1",
        )
        .bind(name)
        .bind(checkpoint as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHECKPOINT_CHANNEL)
            .bind(format!("{name}:{checkpoint}"))
            .execute(&mut *tx)
            .await?;
    }
    // The rows of another partitioning are replaced by these (its workers
    // find theirs gone and take the new ones over, see ensure_partitioning).
    let others: Vec<&str> = locked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    if !others.is_empty() {
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ANY($1)")
            .bind(&others)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    drop_shadow(pool, &shadow).await?;
    let report = RebuildReport {
        messages: applied,
        checkpoint: last.max(live_checkpoint),
        elapsed: started.elapsed(),
    };
    Ok((report, Vec::new()))
}

fn decode_all(messages: &[Message], up_to: u64, skips: &Skips) -> Result<Decoded, ProjectionError> {
    let mut d = decode(messages, up_to, skips);
    match d.bad.take() {
        None => Ok(d),
        Some(e) => Err(e),
    }
}

/// Settings of every projection transaction.
///
/// Custom plans: a projection's statements look up hundreds of keys at once
/// in tables that grow from empty (above all during a rebuild); a generic
/// plan cached while a table was small keeps scanning it whole once large.
///
/// Commits stay synchronous: with asynchronous commit a database crash takes
/// back the last commits after readers saw them (and after `min_sequence`
/// reads were answered from them), so read-your-writes would step back.
async fn custom_plans(conn: &mut PgConnection) -> Result<(), ProjectionError> {
    sqlx::raw_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn set_search_path(conn: &mut PgConnection, schema: &str) -> Result<(), ProjectionError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path TO {schema}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A fresh shadow schema holding empty copies of the projection's tables.
pub async fn create_shadow<P: Projection>(
    pool: &PgPool,
    live: &str,
    shadow: &str,
) -> Result<(), ProjectionError> {
    let mut sql = format!("DROP SCHEMA IF EXISTS {shadow} CASCADE; CREATE SCHEMA {shadow};");
    for table in P::TABLES {
        sql.push_str(&format!(
            "CREATE UNLOGGED TABLE {shadow}.{table} (LIKE {live}.{table} INCLUDING ALL) WITH (fillfactor = 50);"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn drop_shadow(pool: &PgPool, shadow: &str) -> Result<(), ProjectionError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {shadow} CASCADE"
    )))
    .execute(pool)
    .await?;
    Ok(())
}
