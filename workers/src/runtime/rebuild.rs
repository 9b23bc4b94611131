//! The shadow rebuild behind `paved replay` and its `--check`.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::readmodel::Partition;
use paved_eventlog::{EventLog, StoredCommit, checkpoints};
use sqlx::{PgConnection, PgPool};

use super::{
    Projection, ProjectionError, REBUILD_BATCH, REBUILD_WINDOW_ROWS, Skips, decode_all,
    delete_consumer, filter, js_err, set_search_path, skips_for, transaction_settings, wait_batch,
};

/// Progress of a rebuild, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct RebuildProgress {
    pub applied: u64,
    pub total: u64,
}

/// How much a rebuild takes at a time: the defaults are what `paved replay`
/// uses; tests set them small to make a short log span many batches and
/// windows.
#[derive(Clone, Copy, Debug)]
pub struct RebuildLimits {
    /// Most messages decoded and folded at a time.
    pub batch: usize,
    /// Most rows held in a projection's window before they are written.
    pub window_rows: usize,
}

impl Default for RebuildLimits {
    fn default() -> Self {
        Self {
            batch: REBUILD_BATCH,
            window_rows: REBUILD_WINDOW_ROWS,
        }
    }
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
    let limits = RebuildLimits::default();
    let (report, _) = rebuild_then(parts, pool, log, keys, progress, Finish::Swap, limits).await?;
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
    check_with(parts, pool, log, keys, progress, RebuildLimits::default()).await
}

/// [`check`] with other limits.
pub async fn check_with<P: Projection>(
    parts: &[P],
    pool: &PgPool,
    log: &EventLog,
    keys: &TrustedKeys,
    progress: impl FnMut(RebuildProgress),
    limits: RebuildLimits,
) -> Result<(RebuildReport, Vec<TableCheck>), ProjectionError> {
    rebuild_then(parts, pool, log, keys, progress, Finish::Check, limits).await
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
    limits: RebuildLimits,
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
        limits,
        &consumer_name,
    )
    .await;
    // Released at once, not left to the server's inactivity threshold.
    delete_consumer(log, &consumer_name).await;
    result
}

/// A transaction writing into the shadow schema.
async fn shadow_transaction<'c>(
    conn: &'c mut PgConnection,
    shadow: &str,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, ProjectionError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    transaction_settings(&mut tx).await?;
    set_search_path(&mut tx, shadow).await?;
    Ok(tx)
}

/// Folds every commit of `batch` into each share's window; writes the
/// windows that hold more than `max_rows`.
async fn fold_shares<P: Projection>(
    conn: &mut PgConnection,
    parts: &[P],
    windows: &mut [P::Window],
    batch: &[StoredCommit],
    max_rows: usize,
) -> Result<(), ProjectionError> {
    for (part, window) in parts.iter().zip(windows) {
        part.fold_into(&mut *conn, window, batch).await?;
        if P::window_rows(window) > max_rows {
            part.write_window(&mut *conn, window).await?;
        }
    }
    Ok(())
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
    limits: RebuildLimits,
    consumer_name: &str,
) -> Result<(RebuildReport, Vec<TableCheck>), ProjectionError> {
    let started = Instant::now();
    let names: Vec<String> = shares.iter().map(|p| p.checkpoint_name(P::NAME)).collect();
    if finish == Finish::Check {
        // A check compares with what is there: that partitioning must exist.
        checkpoints::existing(pool, P::NAME, &names).await?;
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
        .max_messages_per_batch(limits.batch * 2)
        .messages()
        .await
        .map_err(js_err)?;

    // Messages read (commits and quarantined ones): `applied` as progress goes.
    let mut applied = 0u64;
    let mut last = 0u64;
    let mut windows: Vec<P::Window> = parts.iter().map(|_| Default::default()).collect();
    let mut conn = pool.acquire().await?;
    while applied < total {
        let received = wait_batch(&mut messages, limits.batch).await?;
        let batch = decode_all(&received, u64::MAX, skips)?;
        applied += received.len() as u64;
        last = last.max(batch.through);
        let mut tx = shadow_transaction(&mut conn, &shadow).await?;
        fold_shares(
            &mut tx,
            parts,
            &mut windows,
            &batch.commits,
            limits.window_rows,
        )
        .await?;
        tx.commit().await?;
        progress(RebuildProgress { applied, total });
    }
    // What the windows still hold, before the swap applies live batches.
    let mut tx = shadow_transaction(&mut conn, &shadow).await?;
    for (part, window) in parts.iter().zip(&mut windows) {
        part.write_window(&mut tx, window).await?;
    }
    tx.commit().await?;

    if finish == Finish::Check {
        // Compare like with like: every live share must have got as far as the replay.
        let deadline = Instant::now() + CHECK_WAIT;
        loop {
            let live_at = checkpoints::existing(pool, P::NAME, &names).await?;
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
    transaction_settings(&mut tx).await?;
    if finish == Finish::Swap {
        checkpoints::create(&mut tx, &names).await?;
    }
    let locked = checkpoints::lock_all(&mut tx, P::NAME).await?;
    let live_at: Vec<u64> = names
        .iter()
        .map(|n| locked.iter().find(|(l, _)| l == n).map_or(0, |(_, s)| *s))
        .collect();
    let live_checkpoint = live_at.iter().copied().max().unwrap_or(0);
    set_search_path(&mut tx, &shadow).await?;
    while last < live_checkpoint {
        let received = wait_batch(&mut messages, limits.batch).await?;
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
        checkpoints::set(&mut tx, name, last.max(*at)).await?;
    }
    // The rows of another partitioning are replaced by these (its workers
    // find theirs gone and take the new ones over, see ensure_partitioning).
    let others: Vec<&str> = locked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    if !others.is_empty() {
        checkpoints::remove(&mut tx, &others).await?;
    }
    tx.commit().await?;
    drop_shadow(pool, &shadow).await?;
    // Every row is new: reads plan from statistics of what is there now.
    super::analyze::<P>(pool).await?;
    let report = RebuildReport {
        messages: applied,
        checkpoint: last.max(live_checkpoint),
        elapsed: started.elapsed(),
    };
    Ok((report, Vec::new()))
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
