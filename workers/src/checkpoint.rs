//! The checkpointer: every interval, signs a Merkle root over the messages
//! appended since the last checkpoint and appends it to the checkpoint
//! subject (see [`paved_eventlog::audit`]). Several replicas may run it: the
//! append expects the checkpoint subject's last sequence, so one wins.

use std::time::Duration;

use chrono::Utc;
use paved_eventlog::audit::{self, SigningKey};
use paved_eventlog::log::{AppendError, TraceContext};
use paved_eventlog::{EventLog, LogError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Most messages one checkpoint covers (bounds the checkpointer's memory).
pub const MAX_RANGE: u64 = 100_000;

/// The signing key: the configured one, else one generated on first use
/// and kept in `api_secrets` (`audit_signing_key`).
pub async fn signing_key(
    pool: &PgPool,
    configured: Option<&str>,
) -> Result<SigningKey, CheckpointError> {
    if let Some(seed) = configured.filter(|s| !s.is_empty()) {
        return SigningKey::from_hex(seed).map_err(|e| CheckpointError::Key(e.to_string()));
    }
    let fresh = SigningKey::from_seed(rand::random());
    let seed: String = sqlx::query_scalar(
        "INSERT INTO api_secrets (name, value) VALUES ('audit_signing_key', $1)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING value",
    )
    .bind(fresh.seed_hex())
    .fetch_one(pool)
    .await?;
    SigningKey::from_hex(&seed).map_err(|e| CheckpointError::Key(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("appending the checkpoint: {0}")]
    Append(#[from] AppendError),
    #[error("the last checkpoint does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("audit signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub struct Checkpointer {
    log: EventLog,
    key: SigningKey,
    interval: Duration,
}

impl Checkpointer {
    pub fn new(log: EventLog, key: SigningKey, interval: Duration) -> Self {
        Self { log, key, interval }
    }

    /// Checkpoints every interval until `shutdown`, then once more.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(self.interval) => false,
            };
            // One checkpoint per interval, over everything new; a backlog
            // larger than MAX_RANGE is covered in full ranges back to back.
            // Under steady load there is always something new: going round
            // again at once would sign tiny ranges without pause.
            loop {
                let before = self.log.last_sequence().await.unwrap_or(u64::MAX);
                match self.once().await {
                    Ok(Some(to)) if to >= before => {
                        tracing::debug!(to, "audit checkpoint");
                        break;
                    }
                    Ok(Some(to)) => tracing::debug!(to, "audit checkpoint; more to cover"),
                    Ok(None) => break,
                    // Another replica checkpointed first: try again next time.
                    Err(CheckpointError::Append(AppendError::Conflict)) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit checkpoint failed; retrying next interval");
                        break;
                    }
                }
            }
            if stop {
                return;
            }
        }
    }

    /// Appends one checkpoint over what is not covered yet (at most
    /// [`MAX_RANGE`] messages); `None` when there is nothing new.
    pub async fn once(&self) -> Result<Option<u64>, CheckpointError> {
        let subject = self.log.checkpoint_subject();
        let (expected, from) = match self.log.last_on_subject(&subject).await? {
            Some(m) => (
                m.sequence,
                audit::decode_checkpoint(&m.payload)?.to_sequence + 1,
            ),
            None => (0, 1),
        };
        let last = self.log.last_sequence().await?;
        // Nothing new, or only the last checkpoint itself.
        if last < from || (from == expected && last == expected) {
            return Ok(None);
        }
        let to = last.min(from + MAX_RANGE - 1);
        let root = audit::range_root(&self.log, from, to).await?;
        let payload = self.key.checkpoint(from, to, root, Utc::now());
        self.log
            .append(
                subject,
                expected,
                &format!("checkpoint-{from}-{to}"),
                payload,
                &TraceContext::default(),
            )
            .await?;
        Ok(Some(to))
    }
}
