//! Read-your-writes: queries take `min_sequence` and wait, bounded, until the
//! projection they read has applied the log up to it.
//!
//! "Reached N" means the projection has applied everything it reads up to N:
//! its checkpoint is ≥ N, or no message on the subjects it reads lies between
//! its checkpoint and N (asked of the stream, by the projection's recorded
//! filter subject). A projection that filters subjects never sees most
//! sequences, so waiting for "message N applied" could wait forever.
//!
//! The checkpoints known here come from `NOTIFY`s (they only move forward)
//! and from reading the table after every reconnection (that reading wins:
//! a database restored or failed over to an older state is believed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use paved_eventlog::readmodel::{CHECKPOINT_CHANNEL, Partition};
use paved_eventlog::retry::Backoff;
use paved_eventlog::{EventLog, checkpoints};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// How long a query waits for its read model, by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// How often, while waiting, the stream is asked what lies after the checkpoint.
const IDLE_CHECK: Duration = Duration::from_millis(25);

/// Tracks the projections' checkpoints from `NOTIFY`s, and answers
/// "has projection P reached sequence N?".
#[derive(Clone)]
pub struct Freshness {
    pool: PgPool,
    log: EventLog,
    known: Arc<watch::Sender<HashMap<String, u64>>>,
    max_wait: Duration,
    /// The checkpoint rows of partitioned read models (by read model): one
    /// has reached N when every share has.
    shares: Arc<HashMap<String, Vec<String>>>,
    /// Times the checkpoints were read afresh (a reconnection): they may
    /// have gone back, so what was cached at a checkpoint no longer holds.
    resets: Arc<std::sync::atomic::AtomicU64>,
    /// What the stream said, by checkpoint row: `(checkpoint, through)` —
    /// nothing the row's projection reads lies in `(checkpoint, through]`,
    /// so once it is at `checkpoint` (or past it) it has reached `through`.
    /// The log only grows, so this stays true; reads that wait for a
    /// sequence another projection wrote then skip asking the stream again.
    idle: Arc<std::sync::Mutex<HashMap<String, (u64, u64)>>>,
}

impl Freshness {
    /// Freshness over `pool`'s checkpoints; it learns of new ones while
    /// [`Self::listen`] runs (the caller runs it beside the API, in the
    /// same set of tasks, so that it ends with them).
    pub fn new(pool: PgPool, log: EventLog, max_wait: Duration) -> Self {
        let (known, _) = watch::channel(HashMap::new());
        Self {
            pool,
            log,
            known: Arc::new(known),
            max_wait,
            shares: Arc::default(),
            resets: Arc::default(),
            idle: Arc::default(),
        }
    }

    /// `projection` is split `count` ways (see `readmodel::Partition`).
    pub fn with_shares(mut self, projection: &str, count: u32) -> Self {
        let names = Partition::all(count)
            .iter()
            .map(|p| p.checkpoint_name(projection))
            .collect();
        Arc::make_mut(&mut self.shares).insert(projection.to_owned(), names);
        self
    }

    /// The checkpoint rows `projection` is read from.
    fn rows<'a>(&'a self, projection: &'a str) -> Vec<&'a str> {
        match self.shares.get(projection) {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => vec![projection],
        }
    }

    /// Follows the checkpoints (`LISTEN`, and a fresh read after every
    /// reconnection) until `shutdown`.
    pub async fn listen(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint listener cannot connect; retrying");
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHECKPOINT_CHANNEL).await {
                tracing::warn!(error = %e, "cannot LISTEN for checkpoints");
                continue;
            }
            backoff.reset();
            // Whatever happened while we were not listening.
            if let Err(e) = self.refresh_with(true).await {
                tracing::warn!(error = %e, "cannot read checkpoints");
            }
            loop {
                let n = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = listener.recv() => n,
                };
                match n {
                    Ok(n) => {
                        if let Some((name, seq)) = n.payload().rsplit_once(':')
                            && let Ok(seq) = seq.parse::<u64>()
                        {
                            self.note(name, seq);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint listener lost its connection");
                        break;
                    }
                }
            }
        }
    }

    fn note(&self, projection: &str, seq: u64) {
        self.known.send_if_modified(|m| {
            let e = m.entry(projection.to_owned()).or_insert(0);
            if seq > *e {
                *e = seq;
                true
            } else {
                false
            }
        });
    }

    /// Reads every checkpoint; with `exact`, replaces what is known (after a
    /// reconnection the database is the authority, also when it went back).
    async fn refresh_with(&self, exact: bool) -> Result<(), sqlx::Error> {
        let rows = checkpoints::all(&self.pool).await?;
        if exact {
            let fresh: HashMap<String, u64> = rows;
            self.resets
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.known.send_replace(fresh);
        } else {
            for (name, seq) in rows {
                self.note(&name, seq);
            }
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<(), sqlx::Error> {
        self.refresh_with(false).await
    }

    /// What a cached answer from `projection` is valid for: while this
    /// stays the same, the read model has not changed (its checkpoint, and
    /// the count of fresh readings, which may have moved it back).
    pub fn version(&self, projection: &str) -> (u64, u64) {
        let resets = self.resets.load(std::sync::atomic::Ordering::SeqCst);
        (resets, self.checkpoint(projection))
    }

    /// How far `projection` has got: its slowest share's checkpoint.
    fn checkpoint(&self, projection: &str) -> u64 {
        let known = self.known.borrow();
        self.rows(projection)
            .into_iter()
            .map(|row| known.get(row).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Returns once `projection` has reached `min_sequence` (0: at once);
    /// `UNAVAILABLE` after the bounded wait.
    pub async fn wait_for(&self, projection: &str, min_sequence: u64) -> Result<(), Status> {
        if min_sequence == 0 || self.reached(projection, min_sequence) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut changes = self.known.subscribe();
        // The notification may have gone by before we subscribed.
        self.refresh().await.map_err(crate::error::database)?;
        loop {
            if self.reached(projection, min_sequence) {
                return Ok(());
            }
            if self.all_idle(projection, min_sequence).await? {
                return Ok(());
            }
            let tick = (tokio::time::Instant::now() + IDLE_CHECK).min(deadline);
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(tick) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "read model {projection:?} has not reached sequence {min_sequence} within {:?} (it is at {}): retry",
                    self.max_wait,
                    self.checkpoint(projection)
                )));
            }
        }
    }

    /// Has every share of `projection` reached `min_sequence`, by the
    /// checkpoints known and what the stream said lies after them?
    fn reached(&self, projection: &str, min_sequence: u64) -> bool {
        let known = self.known.borrow();
        let idle = self.idle.lock().expect("the idle map is never poisoned");
        self.rows(projection).into_iter().all(|row| {
            let at = known.get(row).copied().unwrap_or(0);
            at >= min_sequence
                || idle
                    .get(row)
                    .is_some_and(|&(from, through)| at >= from && min_sequence <= through)
        })
    }

    /// Has every share of `projection` applied all it reads up to `min_sequence`?
    async fn all_idle(&self, projection: &str, min_sequence: u64) -> Result<bool, Status> {
        for row in self.rows(projection) {
            if !self.consumer_idle(row, min_sequence).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Is there nothing the projection reads between its checkpoint (as the
    /// database has it now) and `min_sequence`? Then it has applied
    /// everything it reads up to there.
    async fn consumer_idle(&self, projection: &str, min_sequence: u64) -> Result<bool, Status> {
        let row = checkpoints::position(&self.pool, projection)
            .await
            .map_err(crate::error::database)?;
        let Some((checkpoint, filter)) = row.filter(|(_, f)| !f.is_empty()) else {
            return Ok(false);
        };
        // What the database says is at least as new as the NOTIFYs heard:
        // a caller that goes on (and whatever it caches by `version`) must
        // see the checkpoint it waited for.
        self.note(projection, checkpoint);
        if checkpoint >= min_sequence {
            return Ok(true);
        }
        let last = self
            .log
            .last_sequence()
            .await
            .map_err(|e| crate::error::log_unavailable(&e))?;
        // Checked on the first round, before any waiting: a sequence the
        // log has not reached is no read model's to reach.
        if last < min_sequence {
            return Err(Status::out_of_range(format!(
                "min_sequence {min_sequence} is past the end of the log (its last sequence is {last})"
            )));
        }
        let next = self
            .log
            .next_matching(&filter, checkpoint + 1)
            .await
            .map_err(|e| crate::error::log_unavailable(&e))?;
        // Nothing it reads up to the message found (or the log's end as
        // it was before the search).
        let through = next.map_or(last, |n| n - 1);
        if through > checkpoint {
            let mut idle = self.idle.lock().expect("the idle map is never poisoned");
            let e = idle.entry(projection.to_owned()).or_default();
            if through > e.1 {
                *e = (checkpoint, through);
            }
        }
        Ok(next.is_none_or(|n| n > min_sequence))
    }
}
