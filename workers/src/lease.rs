//! One active worker per job: a PostgreSQL advisory lock held on a
//! connection of its own. Other workers stand by and take over when it is
//! released (the holder stopped or crashed).
//!
//! PostgreSQL drops advisory locks when it restarts, and the holder only
//! learns it by asking: [`Lease::check`] does, and every holder calls it
//! before acting on the world and at least every few seconds. Where a write
//! must be fenced inside a transaction, the holder also takes an epoch (the
//! projections keep theirs in `projection_checkpoints`).

use std::time::{Duration, Instant};

use paved_eventlog::retry::Backoff;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// How often a holder should confirm its lease when nothing else made it.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often a standby tries the lock its holder has.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The held lock of job `key`.
pub struct Lease {
    key: String,
    conn: PgConnection,
    checked: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease of {key} is lost: {why}")]
    Lost { key: String, why: String },
}

impl Lease {
    /// Takes the lock of `key`, standing by while another worker holds it
    /// and retrying while the database is unreachable. `None` when
    /// `shutdown` fired first.
    pub async fn acquire(pool: &PgPool, key: &str, shutdown: &CancellationToken) -> Option<Lease> {
        let mut told = false;
        let mut retry = Backoff::new(Duration::from_millis(100), CHECK_EVERY);
        loop {
            let wait = match Self::try_acquire(pool, key).await {
                Ok(Some(lease)) => {
                    tracing::info!(job = key, "took the lease");
                    return Some(lease);
                }
                Ok(None) => {
                    if !told {
                        tracing::info!(job = key, "another worker holds the lease; standing by");
                        told = true;
                    }
                    retry.reset();
                    STANDBY_POLL
                }
                Err(e) => {
                    tracing::warn!(job = key, error = %e, "cannot take the lease; retrying");
                    retry.next_delay()
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn try_acquire(pool: &PgPool, key: &str) -> Result<Option<Lease>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then(|| Lease {
            key: key.to_owned(),
            conn,
            checked: Instant::now(),
        }))
    }

    /// The connection holding the lock: statements on it run as the holder.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Confirms the lock is still held: its connection answers and the
    /// server lists the lock as this session's.
    pub async fn check(&mut self) -> Result<(), LeaseError> {
        // The connection is the lease's own: the only advisory lock it holds is this one.
        let held: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)",
        )
        .fetch_one(&mut self.conn)
        .await;
        match held {
            Ok(true) => {
                self.checked = Instant::now();
                Ok(())
            }
            Ok(false) => Err(self.lost("the lock is no longer held".to_owned())),
            Err(e) => Err(self.lost(format!("its connection failed: {e}"))),
        }
    }

    /// [`Self::check`], unless it was confirmed within [`CHECK_EVERY`].
    pub async fn check_if_due(&mut self) -> Result<(), LeaseError> {
        if self.checked.elapsed() < CHECK_EVERY {
            return Ok(());
        }
        self.check().await
    }

    fn lost(&self, why: String) -> LeaseError {
        LeaseError::Lost {
            key: self.key.clone(),
            why,
        }
    }
}
