//! The checkpoint store: every statement on [`CHECKPOINTS_TABLE`], for the
//! projections that write their checkpoints and for the API, the metrics
//! and the bench that read them.
//!
//! A row per projection (or per share of a partitioned one, see
//! [`Partition::checkpoint_name`]): `last_sequence` is the last stream
//! sequence applied, `epoch` the fencing epoch of the active worker,
//! `filter_subject` what it reads and `consumer` its session's consumer.
//! Moving a checkpoint signals [`CHECKPOINT_CHANNEL`] in the same
//! transaction.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

pub use crate::readmodel::{CHECKPOINT_CHANNEL, CHECKPOINTS_TABLE, Partition};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    /// The rows of another partitioning cannot be continued, or a row is missing.
    #[error("{0}")]
    Partitioning(String),
}

/// Does the database hold Paved's schema?
pub async fn schema_present(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'projection_checkpoints')",
    )
    .fetch_one(pool)
    .await
}

/// Every row's sequence.
pub async fn all(pool: &PgPool) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT projection, last_sequence FROM projection_checkpoints")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(n, s)| (n, s.max(0) as u64))
        .collect())
}

/// One row's sequence (`None`: the projection never ran).
pub async fn get(pool: &PgPool, name: &str) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(seq.map(|s| s.max(0) as u64))
}

/// One row's sequence and the subjects it reads (empty before its first session).
pub async fn position(pool: &PgPool, name: &str) -> Result<Option<(u64, String)>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT last_sequence, filter_subject FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(s, f)| (s.max(0) as u64, f)))
}

/// The lowest sequence of `names`; `None` unless every one of them has a row.
pub async fn slowest(pool: &PgPool, names: &[String]) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT min(last_sequence) FROM projection_checkpoints WHERE projection = ANY($1)
          HAVING count(*) = cardinality($1)",
    )
    .bind(names)
    .fetch_optional(pool)
    .await?
    .flatten();
    Ok(seq.map(|s| s.max(0) as u64))
}

/// The rows of `projection`: its own and those of each share of any partitioning.
const ROWS_OF: &str = "projection = $1 OR projection LIKE $1 || '-%of%'";

/// Forgets every row of `projection` (the bench, before it replays one afresh).
pub async fn forget(conn: &mut PgConnection, projection: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM projection_checkpoints WHERE {ROWS_OF}"
    )))
    .bind(projection)
    .execute(conn)
    .await?;
    Ok(())
}

/// The row's sequence and epoch.
pub async fn read(pool: &PgPool, name: &str) -> Result<(u64, i64), sqlx::Error> {
    let (seq, epoch): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, epoch FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok((seq as u64, epoch))
}

/// The row's epoch.
pub async fn epoch(conn: &mut PgConnection, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT epoch FROM projection_checkpoints WHERE projection = $1")
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Increments the row's fencing epoch and returns it: the caller is now the
/// one writer, and any earlier one's next batch is refused.
pub async fn take_epoch(conn: &mut PgConnection, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE projection_checkpoints SET epoch = epoch + 1 WHERE projection = $1 RETURNING epoch",
    )
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Records the session a worker opened (for operators and freshness checks).
pub async fn record_session(
    pool: &PgPool,
    name: &str,
    consumer: &str,
    filter: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET consumer = $2, filter_subject = $3 WHERE projection = $1",
    )
    .bind(name)
    .bind(consumer)
    .bind(filter)
    .execute(pool)
    .await?;
    Ok(())
}

/// Locks the row for this transaction: batches of one projection (and a
/// rebuild's final swap) never interleave. Returns its sequence and epoch.
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<(u64, i64), sqlx::Error> {
    let (seq, epoch): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, epoch FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok((seq as u64, epoch))
}

/// Locks every row of `projection` (all partitionings), in a fixed order.
pub async fn lock_all(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE {ROWS_OF} ORDER BY projection FOR UPDATE"
    )))
    .bind(projection)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(n, s)| (n, s as u64)).collect())
}

/// Creates the rows `names` at 0 where missing.
pub async fn create(conn: &mut PgConnection, names: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection)
         SELECT unnest($1::text[]) ON CONFLICT (projection) DO NOTHING",
    )
    .bind(names)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the rows `names`.
pub async fn remove(conn: &mut PgConnection, names: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ANY($1)")
        .bind(names)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the row forward (never back) and tells listeners.
pub async fn advance(
    conn: &mut PgConnection,
    name: &str,
    sequence: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints
            SET last_sequence = GREATEST(last_sequence, $2), updated_at = now()
          WHERE projection = $1",
    )
    .bind(name)
    .bind(sequence as i64)
    .execute(&mut *conn)
    .await?;
    notify(conn, name, sequence).await
}

/// Sets the row to `sequence` (a rebuild's swap) and tells listeners.
pub async fn set(conn: &mut PgConnection, name: &str, sequence: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET last_sequence = $2, updated_at = now() WHERE projection = $1",
    )
    .bind(name)
    .bind(sequence as i64)
    .execute(&mut *conn)
    .await?;
    notify(conn, name, sequence).await
}

async fn notify(conn: &mut PgConnection, name: &str, sequence: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHECKPOINT_CHANNEL)
        .bind(format!("{name}:{sequence}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes sure the rows of `projection` split `count` ways exist (`count` 1:
/// its one row), and returns their sequences in share order.
///
/// Missing rows are created together, in one transaction: at the position
/// of the rows of another partitioning if those agree on one sequence (the
/// switch then neither skips nor repeats a message: every share reads the
/// whole context, so all of them continue from there), which are removed;
/// at 0 if there are none. Rows of another partitioning that disagree (its
/// workers were stopped at different places) cannot be continued exactly:
/// [`CheckpointError::Partitioning`], fixed by a rebuild with the new count.
pub async fn ensure_partitioning(
    pool: &PgPool,
    projection: &str,
    count: u32,
) -> Result<Vec<u64>, CheckpointError> {
    let names: Vec<String> = Partition::all(count)
        .iter()
        .map(|p| p.checkpoint_name(projection))
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("paved.partitioning.{projection}"))
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence FROM projection_checkpoints WHERE {ROWS_OF}"
    )))
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
            return Err(CheckpointError::Partitioning(format!(
                "{projection} is to be split {count} way(s), but the checkpoints of its earlier partitioning disagree ({}): rebuild it with the new partitioning (paved projection rebuild {projection})",
                others
                    .iter()
                    .map(|(n, s)| format!("{n} at {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, last_sequence)
         SELECT unnest($1::text[]), $2 ON CONFLICT (projection) DO NOTHING",
    )
    .bind(&names)
    .bind(seed as i64)
    .execute(&mut *tx)
    .await?;
    if !others.is_empty() {
        tracing::warn!(
            projection,
            count,
            from = seed,
            "the read model's partitioning changed: its shares continue from the earlier checkpoint"
        );
        let gone: Vec<&str> = others.iter().map(|(n, _)| *n).collect();
        remove(&mut tx, &gone).await?;
    }
    tx.commit().await?;
    Ok(names
        .iter()
        .map(|n| found.get(n.as_str()).copied().unwrap_or(seed))
        .collect())
}

/// The sequences of the rows `names` of `projection`; an error naming the
/// rows there are when one is missing (nothing is created).
pub async fn existing(
    pool: &PgPool,
    projection: &str,
    names: &[String],
) -> Result<Vec<u64>, CheckpointError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT projection, last_sequence FROM projection_checkpoints
          WHERE {ROWS_OF} ORDER BY projection"
    )))
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
                    CheckpointError::Partitioning(format!(
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
