//! The live worker of one projection: its lease and fencing epoch, its
//! consumer sessions, and the batches it applies with the checkpoint.

use std::time::{Duration, Instant};

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::retry::Backoff;
use paved_eventlog::{EventLog, StoredCommit, TraceContext, checkpoints, quarantine};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    CONSUMER_INACTIVE, Decoded, Health, LEASE_CHECK, MAX_BATCH, Outcome, Projection,
    ProjectionError, ProjectionStatus, Skips, consumer_name, decode, delete_consumer, filter,
    js_err, next_batch, skips_for, transaction_settings,
};
use crate::lease::{self, Lease};

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
    /// Commits applied since the tables were last looked at for `ANALYZE`.
    since_analyze: u64,
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
        let mut backoff = Backoff::new(Duration::from_millis(100), lease::CHECK_EVERY);
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
                    if !backoff.wait(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn take_epoch(&self, lease: &mut Lease) -> Result<i64, ProjectionError> {
        checkpoints::ensure_partitioning(&self.pool, P::NAME, self.projection.partition().count)
            .await?;
        // Committed synchronously (the session default) before anything is written.
        let epoch = checkpoints::take_epoch(lease.conn(), &self.name).await?;
        // Consumers of earlier versions (one durable consumer per projection).
        delete_consumer(&self.log, &consumer_name(P::NAME)).await;
        Ok(epoch)
    }

    /// Is the projection still ours? The lock must be held and the epoch unchanged.
    async fn check_fence(&self, fence: &mut Fence) -> Result<(), ProjectionError> {
        fence.lease.check().await?;
        let current = checkpoints::epoch(fence.lease.conn(), &self.name).await?;
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
        let mut backoff = Backoff::reconnect();
        while !shutdown.is_cancelled() {
            let mut session = match self.open(fence.epoch).await {
                Ok(s) => s,
                Err(e @ ProjectionError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = %self.name, error = %e, "cannot open a session; retrying");
                    if !backoff.wait(shutdown).await {
                        break;
                    }
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
                            backoff.reset();
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
                    tracing::warn!(projection = %self.name, error = %e, "session ended; reopening at the checkpoint");
                    // A batch that fails again and again (the database is
                    // down, a statement fails) is retried ever more slowly.
                    if !backoff.wait(shutdown).await {
                        break;
                    }
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
        let (checkpoint, current) = checkpoints::read(&self.pool, &self.name).await?;
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
        checkpoints::record_session(&self.pool, &self.name, &name, &filter).await?;
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
            since_analyze: 0,
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
        transaction_settings(&mut tx).await?;
        let (checkpoint, current) = checkpoints::lock(&mut tx, &self.name).await?;
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
        checkpoints::advance(&mut tx, &self.name, last).await?;
        tx.commit().await?;
        session.committed = last;
        session.since_analyze += batch.len() as u64;
        if session.since_analyze >= super::ANALYZE_EVERY {
            session.since_analyze = 0;
            // Statistics only: a failure is not the batch's.
            if let Err(e) = super::analyze_stale::<P>(&self.pool).await {
                tracing::warn!(projection = %self.name, error = %e, "cannot analyze the read model's tables");
            }
        }
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
